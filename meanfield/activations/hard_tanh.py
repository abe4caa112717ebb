"""Hard tanh clip(x, -1, 1): moments from the normal CDF and the incomplete gamma function; the
pair kernels K, Kd, PK as 1-D integrals of closed-form conditional expectations.

With t = 1/sqrt(q): D2 = P(|X| < t) = erf(t / sqrt 2), dA2 = E[X^2; |X| < t] = P(chi2_3 < t^2),
PD = q dA2, A2 = 2 Phi(-t) + PD (X standard normal); no difference of nearly equal terms at any q.

Pairs: given u1 = x, u2 ~ N(c x, s^2) with s^2 = q (1 - c)(1 + c), and

    H(m, s)  = E[clip(m + s Z)]             = m - s psi((m - 1)/s) + s psi((-1 - m)/s),
    Hd(m, s) = P(|m + s Z| < 1)             = (erf((1 - m)/(s sqrt 2)) + erf((1 + m)/(s sqrt 2))) / 2,
    J(m, s)  = E[(m + s Z); |m + s Z| < 1]  = m Hd + s (phi((-1 - m)/s) - phi((1 - m)/s)),

psi(a) = E[(a + Z)_+] = a Phi(a) + phi(a), the kernels are K = E[clip(x) H(c x, s)],
Kd = E[1(|x| < 1) Hd(c x, s)], PK = E[x 1(|x| < 1) J(c x, s)] over x ~ N(0, q): smooth integrands
with kinks at +-1 and bends (width s/|c|) at +-1/c, integrated by :func:`meanfield.gauss.expect`
to its tolerance relative to the integral itself. (The rectangle probabilities of the bivariate
normal by Owen's T, used before, cancel: 1e-8 relative error at c = 1 - 1e-15 and q = 50, and
no digits at all at q = 1e16.) J is a difference of nearly equal terms once s >> 1; it is then
integrated over [-1, 1] by Gauss-Legendre instead (the density is smooth there).
"""
import numpy as np

from ..gauss import conditional_bends, expect
from ..special import erf, gammainc, ndtr
from .base import Activation, register_activation, zeros

_SQRT_2PI = np.sqrt(2 * np.pi)
_SQRT2 = np.sqrt(2.0)
_GL_Y, _GL_W = np.polynomial.legendre.leggauss(24)


def _pdf(x):
    return np.exp(-0.5 * x * x) / _SQRT_2PI


def _t(q):
    """t = 1/sqrt(q) (inf at q = 0, where every moment below takes its limit)."""
    with np.errstate(divide="ignore"):
        return 1.0 / np.sqrt(np.asarray(q, float))


def _D2(q):
    return erf(_t(q) / np.sqrt(2.0))


def _dA2(q):
    return gammainc(1.5, 0.5 * _t(q) ** 2)


def _PD(q):
    return np.asarray(q, float) * _dA2(q)


def _A2(q):
    return 2 * ndtr(-_t(q)) + _PD(q)


def _ends(m, s):
    """(e^-((1 - m)^2 / 2 s^2) - e^-((1 + m)^2 / 2 s^2)) / 2 for m >= 0 without cancellation:
    e^-((1 + m^2) / 2 s^2) sinh(m / s^2) while m / s^2 < 1."""
    r = m / (s * s)
    small = np.exp(-(1 + m * m) / (2 * s * s)) * np.sinh(np.minimum(r, 1.0))
    wide = 0.5 * (np.exp(-(1 - m) ** 2 / (2 * s * s)) - np.exp(-(1 + m) ** 2 / (2 * s * s)))
    return np.where(r < 1, small, wide)


def _odd_parts(m, s):
    """T = P(Y > 1) - P(Y < -1) and J = E[Y; |Y| < 1] for Y ~ N(m, s^2), m >= 0, s > 0.

    Both are odd in m and tiny differences of O(1) terms when m << s or s >> 1; each is taken
    where it has no cancellation: T by Gauss-Legendre over the short interval of the density that
    separates the two tails (length 2m/s <= 1), else by erf (m > 1: two terms of one sign) or
    by Phi (their ratio is then below e^-1); J by Gauss-Legendre over [0, 1]
    of y 2 N(y; 0, s^2) e^(-m^2/2s^2) sinh(m y / s^2) for s >= 1/2, else m Hd - s (phi(a) - phi(b))
    with the phi difference from :func:`_ends`.
    """
    lo, hi, span = (-m - 1) / s, (m - 1) / s, 2 * m / s  # span = hi - lo, without the difference
    u = 0.5 * (_GL_Y.reshape((-1,) + (1,) * m.ndim) + 1)  # Gauss-Legendre on [0, 1]
    w = 0.5 * _GL_W.reshape(u.shape)
    t_gl = (span * w * _pdf(lo + span * u)).sum(0)
    t_erf = np.where(m > 1, 0.5 * (erf(hi / _SQRT2) - erf(lo / _SQRT2)), ndtr(hi) - ndtr(lo))
    T = np.where(span <= 1, t_gl, t_erf)
    ss = s * s
    r = m * u / ss  # N(u; m, s^2) - N(-u; m, s^2) = 2 N(u; 0, s^2) e^(-m^2/2s^2) sinh(r), or for r >= 1
    odd = np.where(r < 1, 2 * _pdf(u / s) * np.exp(-m * m / (2 * ss)) * np.sinh(np.minimum(r, 1.0)),
                   _pdf((u - m) / s) - _pdf((u + m) / s)) / s  # (no overflow, no cancellation)
    j_gl = (w * u * odd).sum(0)
    j_closed = m * _Hd(m, s) - 2 * s / _SQRT_2PI * _ends(m, s)
    return T, np.where(s >= 0.5, j_gl, j_closed)


def _H(m, s):
    """E[clip(m + s Z)]."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        T, J = _odd_parts(np.abs(m), np.where(s > 0, s, 1.0))
    return np.where(s > 0, np.sign(m) * (T + J), np.clip(m, -1.0, 1.0))


def _Hd(m, s):
    """P(|m + s Z| < 1): a sum of two erfs of the same sign where |m| < 1."""
    with np.errstate(divide="ignore", invalid="ignore"):
        smooth = 0.5 * (erf((1 - m) / (s * _SQRT2)) + erf((1 + m) / (s * _SQRT2)))
    return np.where(s > 0, smooth, (np.abs(m) < 1).astype(float))


def _J(m, s):
    """E[(m + s Z); |m + s Z| < 1]."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        J = _odd_parts(np.abs(m), np.where(s > 0, s, 1.0))[1]
    return np.where(s > 0, np.sign(m) * J, np.where(np.abs(m) < 1, m, 0.0))


def _pair(inner, support):
    """The kernel E[outer(x) inner(c x, s)] over x ~ N(0, q) (see the module docstring)."""
    def kernel(q, c):
        q, c = np.broadcast_arrays(np.asarray(q, float), np.asarray(c, float))
        s = np.sqrt(np.maximum(q * (1 - c) * (1 + c), 0.0))
        cc, ss = c[..., None], s[..., None]
        return expect(lambda x: support(x) * inner(cc * x, ss), q, kinks=(-1.0, 1.0),
                      bends=conditional_bends((-1.0, 1.0), c, s))
    return kernel


def hard_tanh() -> Activation:
    """clip(x, -1, 1)."""
    inside = lambda x: np.where(np.abs(x) < 1, 1.0, 0.0)  # noqa: E731
    return Activation(
        "hard_tanh", lambda x: np.clip(x, -1.0, 1.0), inside, zeros,
        kinks=(-1.0, 1.0), zeros=(0.0,), bounded=True, scale=np.inf, width=0.0,
        tails=((-1.0, 0.0), (1.0, 0.0)),
        closed={"A2": _A2, "D2": _D2, "dA2": _dA2, "PD": _PD,
                "K": _pair(_H, lambda x: np.clip(x, -1.0, 1.0)), "Kd": _pair(_Hd, inside),
                "PK": _pair(_J, lambda x: x * inside(x))},
        torch_phi=_torch_hard_tanh)


def _torch_hard_tanh(x):
    import torch
    return torch.clamp(x, -1.0, 1.0)


register_activation("hard_tanh", hard_tanh, aliases=("htanh", "hardtanh"))
