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


# --- any variance: structure-aware scipy references and mpmath closed-form references -----------
# Used by tests/test_quadrature_*.py. Breakpoints are chosen here, not taken from meanfield: the
# places where each phi turns (re-typed), 0, and multiples of the standard deviation.
MARKS = {"tanh": (1.0, 5.0, 25.0), "sigmoid": (1.0, 10.0, 45.0), "silu": (1.0, 10.0, 45.0),
         "gelu": (1.0, 4.0, 12.0), "erf": (1.0, 3.0, 8.0), "hard_tanh": (1.0,), "relu": (), "linear": ()}
# phi(x)^2 minus the square of phi's asymptote (a line on each side), and that square's
# d/dq E[.]: d/dq E[asymptote^2] + E[remainder (x^2/q - 1)/(2q)] is d/dq E[phi^2] without the
# O(1) cancellation of bounded phi at large q.
_E = math.sqrt(math.pi) / 2
REMAINDER = {
    "tanh": (lambda x: -1 / math.cosh(x) ** 2 if abs(x) < 350 else 0.0, lambda q: 0.0),
    "sigmoid": (lambda x: (1 / (1 + math.exp(-x)) if x > -700 else 0.0) ** 2 - (x > 0), lambda q: 0.0),
    "erf": (lambda x: -math.erfc(_E * abs(x)) * (2 - math.erfc(_E * abs(x))), lambda q: 0.0),
    "gelu": (lambda x: (x * 0.5 * math.erfc(-x / math.sqrt(2))) ** 2 - x * x * (x > 0), lambda q: 0.5),
    "silu": (lambda x: (x / (1 + math.exp(-x)) if x > -700 else 0.0) ** 2 - x * x * (x > 0), lambda q: 0.5),
    "hard_tanh": (lambda x: min(x * x - 1, 0.0), lambda q: 0.0),
    "relu": (lambda x: 0.0, lambda q: 0.5),
    "linear": (lambda x: 0.0, lambda q: 1.0),
}


def _sig(x):
    return 1 / (1 + math.exp(-x)) if x > -700 else 0.0


D2PHI = {  # phi'' of the smooth activations, for dA2 at small q
    "tanh": lambda x: -2 * math.tanh(x) / math.cosh(x) ** 2 if abs(x) < 350 else 0.0,
    "sigmoid": lambda x: _sig(x) * (1 - _sig(x)) * (1 - 2 * _sig(x)),
    "erf": lambda x: -2 * _E * _E * x * 2 * _E / math.sqrt(math.pi) * math.exp(-_E * _E * x * x),
    "gelu": lambda x: (2 - x * x) * math.exp(-x * x / 2) / math.sqrt(2 * math.pi),
    "silu": lambda x: _sig(x) * (1 - _sig(x)) * (2 + x * (1 - 2 * _sig(x))),
}


def gauss_x(fn, var, mean=0.0, points=(), epsabs=0.0):
    """E[fn(x)], x ~ N(mean, var), by quad in x on [mean - 12 sd, mean + 12 sd] cut at ``points``
    (those inside), at mean and at mean +- (1, 3, 6) sd (relative tolerance 1e-13 per piece, and
    ``epsabs`` shared among the pieces)."""
    if var == 0:
        return fn(mean)
    s = math.sqrt(var)
    lo, hi = mean - 12 * s, mean + 12 * s
    cuts = {mean + k * s for k in (-6, -3, -1, 0, 1, 3, 6)} | {p for p in points if lo < p < hi}
    edges = [lo] + sorted(p for p in cuts if lo < p < hi) + [hi]

    def f(x):
        z = (x - mean) / s
        return fn(x) * math.exp(-z * z / 2) / (s * math.sqrt(2 * math.pi))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrationWarning)
        return math.fsum(quad(f, a, b, epsabs=epsabs / len(edges), epsrel=1e-13, limit=400)[0]
                         for a, b in zip(edges[:-1], edges[1:]))


def _points(name):
    marks = MARKS[name]
    return tuple(sorted({0.0} | {m for a in marks for m in (a, -a)}))


def moment_ref(name, key, q):
    """A2, dA2, D2 or PD of a built-in activation at variance q (scipy quad)."""
    phi, dphi = PHI[name]
    pts = _points(name)
    if key == "dA2":
        if q < 1 and name in D2PHI:  # E[phi'^2 + phi phi'']: no cancellation at small q
            return gauss_x(lambda x: dphi(x) ** 2 + phi(x) * D2PHI[name](x), q, 0.0, pts)
        # Stein's identity on phi^2 minus its asymptote's square (plus that square's slope)
        rem, slope = REMAINDER[name] if q >= 1 else (lambda x: phi(x) ** 2, lambda q: 0.0)
        return slope(q) + gauss_x(lambda x: rem(x) * (x * x / q - 1) / (2 * q), q, 0.0, pts)
    fn = {"A2": lambda x: phi(x) ** 2, "D2": lambda x: dphi(x) ** 2,
          "PD": lambda x: (phi(x) * dphi(x)) ** 2}[key]
    return gauss_x(fn, q, 0.0, pts)


def pair_ref(name, key, q, c):
    """K, Kd or PK of a built-in activation at variance q and correlation c (nested scipy quad;
    one-dimensional at c = 0, +-1)."""
    phi, dphi = PHI[name]
    f = {"K": phi, "Kd": dphi, "PK": lambda x: phi(x) * dphi(x)}[key]
    pts = _points(name)
    if c in (1.0, -1.0):
        return gauss_x(lambda x: f(x) * f(c * x), q, 0.0, pts)
    if c == 0.0:
        return gauss_x(f, q, 0.0, pts) ** 2
    inner_var = q * (1 - c) * (1 + c)
    outer_pts = pts + tuple(p / c for p in pts)
    # the inner integrals to 1e-16 sqrt(E f^2) absolute (relative accuracy far in the tails is
    # costly and useless); K and PK cancel (PK inside the inner integral too), so the outer one to
    # 1e-16 E f^2 absolute; Kd (one sign, ~1/q << E f^2 at large q) relative only
    f2 = gauss_x(lambda x: f(x) ** 2, q, 0.0, pts)
    return gauss_x(lambda x: f(x) * gauss_x(f, inner_var, c * x, pts, 1e-16 * math.sqrt(f2)), q, 0.0,
                   outer_pts, 0.0 if key == "Kd" else 1e-16 * f2)


def _mp_inner(name, key):
    """(f, m, s) -> E[f(m + s Z)] in mpmath closed form for the activations that have one."""
    import mpmath as mp

    def relu(m, s):
        return m * mp.ncdf(m / s) + s * mp.npdf(m / s)

    def erf_(m, s):
        return mp.erf(_E * m / mp.sqrt(1 + 2 * _E ** 2 * s * s))

    def derf(m, s):
        d = 1 + 2 * _E ** 2 * s * s
        return mp.exp(-_E ** 2 * m * m / d) / mp.sqrt(d)

    def gelu(m, s):
        r = mp.sqrt(1 + s * s)
        return m * mp.ncdf(m / r) + s * s * mp.npdf(m / r) / r

    def dgelu(m, s):
        r = mp.sqrt(1 + s * s)
        return mp.ncdf(m / r) + m * mp.npdf(m / r) / r ** 3

    def clip(m, s):
        a, b = (-1 - m) / s, (1 - m) / s
        return m * (mp.ncdf(b) - mp.ncdf(a)) + s * (mp.npdf(a) - mp.npdf(b)) + mp.ncdf(-b) - mp.ncdf(a)

    def dclip(m, s):
        return mp.ncdf((1 - m) / s) - mp.ncdf((-1 - m) / s)

    def clip_dclip(m, s):
        a, b = (-1 - m) / s, (1 - m) / s
        return m * (mp.ncdf(b) - mp.ncdf(a)) + s * (mp.npdf(a) - mp.npdf(b))
    table = {("relu", "K"): relu, ("relu", "Kd"): lambda m, s: mp.ncdf(m / s), ("relu", "PK"): relu,
             ("erf", "K"): erf_, ("erf", "Kd"): derf, ("gelu", "K"): gelu, ("gelu", "Kd"): dgelu,
             ("hard_tanh", "K"): clip, ("hard_tanh", "Kd"): dclip, ("hard_tanh", "PK"): clip_dclip,
             ("linear", "K"): lambda m, s: m, ("linear", "Kd"): lambda m, s: 1, ("linear", "PK"): lambda m, s: m}
    return table[(name, key)]


def _mp_phi(name, key):
    import mpmath as mp
    k = 2 * _E / mp.sqrt(mp.pi)
    phi = {"relu": lambda x: max(x, 0), "erf": lambda x: mp.erf(_E * x),
           "gelu": lambda x: x * mp.ncdf(x), "hard_tanh": lambda x: max(min(x, 1), -1), "linear": lambda x: x}[name]
    dphi = {"relu": lambda x: 1 if x > 0 else 0, "erf": lambda x: k * mp.exp(-_E ** 2 * x * x),
            "gelu": lambda x: mp.ncdf(x) + x * mp.npdf(x), "hard_tanh": lambda x: 1 if abs(x) < 1 else 0,
            "linear": lambda x: 1}[name]
    return {"K": phi, "Kd": dphi, "PK": lambda x: phi(x) * dphi(x)}[key]


def _mp_points(name, q, extra=()):
    import mpmath as mp
    s = mp.sqrt(q)
    pts = {mp.mpf(0)} | {mp.mpf(p) for m in MARKS[name] for p in (m, -m)} | {mp.mpf(p) for p in extra}
    pts |= {k * s for k in (-12, -4, -1, 1, 4, 12)}
    return sorted(p for p in pts if abs(p) <= 12 * s)


def mp_pair(name, key, q, c, dps=20):
    """K, Kd or PK by mpmath: a 1-D integral of f(x) E[f(c x + s Z)] with the inner expectation
    in closed form (relu, erf, gelu, hard_tanh, linear), s^2 = q (1 - c^2)."""
    import mpmath as mp
    with mp.workdps(dps):
        q, c = mp.mpf(q), mp.mpf(c)
        f = _mp_phi(name, key)
        s = mp.sqrt(q * (1 - c) * (1 + c))
        sd = mp.sqrt(q)
        extra = [] if c == 0 else [p / c for p in (1, -1, 0)]
        if s == 0:
            inner = lambda x: f(c * x)  # noqa: E731
        else:
            g = _mp_inner(name, key)
            inner = lambda x: g(c * x, s)  # noqa: E731
        return _mp_quad(lambda x: f(x) * inner(x) * mp.npdf(x, 0, sd), _mp_points(name, q, extra))


def _mp_quad(fn, points):
    """mpmath quad, repeated on fn / |first estimate|: mp.quad's tolerance is absolute, so a
    1e-46 integral would come back with a few digits only."""
    import mpmath as mp
    est = mp.quad(fn, points)
    if est == 0 or abs(est) > 1e-3:
        return est
    return est * mp.quad(lambda x: fn(x) / est, points)


def _mp_remainder(name):
    """phi^2 minus the square of phi's asymptote, without cancellation, and d/dq E[asymptote^2]."""
    import mpmath as mp
    if name == "erf":
        return (lambda x: -mp.erfc(_E * abs(x)) * (2 - mp.erfc(_E * abs(x)))), 0
    if name == "hard_tanh":
        return (lambda x: min(x * x - 1, 0)), 0
    if name == "gelu":
        return (lambda x: (x * mp.ncdf(x)) ** 2 - (x * x if x > 0 else 0)), 0.5
    return (lambda x: 0), {"relu": 0.5, "linear": 1}[name]


def mp_moment(name, key, q, dps=30):
    """A2, dA2, D2 or PD by mpmath. dA2 by Stein's identity on phi^2 minus its asymptote's square
    for q >= 1 (see REMAINDER), on phi^2 itself below."""
    import mpmath as mp
    with mp.workdps(dps):
        q = mp.mpf(q)
        phi, dphi = _mp_phi(name, "K"), _mp_phi(name, "Kd")
        rem, slope = _mp_remainder(name) if q >= 1 else ((lambda x: phi(x) ** 2), 0)
        fn = {"A2": lambda x: phi(x) ** 2, "D2": lambda x: dphi(x) ** 2,
              "PD": lambda x: (phi(x) * dphi(x)) ** 2,
              "dA2": lambda x: rem(x) * (x * x / q - 1) / (2 * q)}[key]
        return (slope if key == "dA2" else 0) + _mp_quad(lambda x: fn(x) * mp.npdf(x, 0, mp.sqrt(q)),
                                                          _mp_points(name, q))
