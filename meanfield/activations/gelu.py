"""GELU x Phi(x) (the exact form, not the tanh approximation): entire, and relu(x) to double
precision beyond |x| = 10 (|x| Phi(-|x|) < 1e-22). K, Kd, A2, D2 and dA2 in closed form.

Closed forms (Gaussian integration by parts; docs/THEORY.md §13). With u1, u2 of variance q and
correlation c, D = (1 + q (1 - c)) (1 + q (1 + c)) = (1 + q)^2 - q^2 c^2 and
theta = atan2(sqrt(D), -q c) = arccos(-q c / (1 + q)):

    K  = E[gelu(u1) gelu(u2)]   = q c theta / (2 pi) + q^2 ((1 + c^2) + q (1 - c^2)) / (2 pi (1 + q) sqrt(D))
    Kd = E[gelu'(u1) gelu'(u2)] = theta / (2 pi) + q c (3 + 5 q + 2 q^2 (1 - c^2)) / (2 pi (1 + q) D^(3/2))

(Kd = dK/dc / q), and A2 = K(q, 1), D2 = Kd(q, 1), dA2 = dA2/dq. Every term is a sum of
positive parts or a product, so no digits are lost at c = +-1 or at large q (1 - c and 1 + c
enter as computed from c, exact near +-1). PD and PK are left to quadrature.
"""
import numpy as np

from ..special import ndtr
from .base import Activation, register_activation

_SQRT_2PI = np.sqrt(2 * np.pi)
_TWO_PI = 2 * np.pi


def _pdf(x):
    return np.exp(-0.5 * x * x) / _SQRT_2PI


def _torch_gelu(x):
    import torch
    return torch.nn.functional.gelu(x)  # exact x Phi(x) (approximate="none")


def _pair_parts(q, c):
    """q, c, 1 - c^2, sqrt(1 + q (1 - c)) sqrt(1 + q (1 + c)) = sqrt(D), q / (1 + q), theta; the
    square roots taken apart so that nothing overflows below q ~ 1e300."""
    q, c = np.broadcast_arrays(np.asarray(q, float), np.asarray(c, float))
    sa, sb = np.sqrt(1.0 + q * (1.0 - c)), np.sqrt(1.0 + q * (1.0 + c))
    return q, c, (1.0 - c) * (1.0 + c), sa, sb, q / (1.0 + q), np.arctan2(sa * sb, -q * c)


def _K(q, c):
    q, c, one_m_c2, sa, sb, r, theta = _pair_parts(q, c)
    return q * c * theta / _TWO_PI + q * r * (((1.0 + c * c) + q * one_m_c2) / (sa * sb)) / _TWO_PI


def _Kd(q, c):
    q, c, one_m_c2, sa, sb, r, theta = _pair_parts(q, c)
    # (3 + 5q + 2 q^2 (1 - c^2)) / D^1.5 with every factor O(1) or O(q)
    inner = ((3.0 + 5.0 * q) / sa ** 2 / sb ** 2 + 2.0 * (q / sa ** 2) * (q / sb ** 2) * one_m_c2) / (sa * sb)
    return theta / _TWO_PI + c * r * inner / _TWO_PI


def _A2(q):
    return _K(q, 1.0)


def _D2(q):
    return _Kd(q, 1.0)


def _dA2(q):
    """theta_1 / 2pi + q (5 + 11q + 4q^2) / (2pi (1 + q)^2 (1 + 2q)^1.5), the polynomial ratio
    written as 2 + (5q + 3) / ((1 + q)(1 + 2q)) (no overflow)."""
    q = np.asarray(q, float)
    s = np.sqrt(1.0 + 2.0 * q)
    ratio = 2.0 + (5.0 * q + 3.0) / (1.0 + q) / (1.0 + 2.0 * q)
    return np.arctan2(s, -q) / _TWO_PI + (q / (1.0 + q)) * ratio / s / _TWO_PI


def gelu() -> Activation:
    """x Phi(x), Phi the standard normal CDF."""
    return Activation("gelu", lambda x: x * ndtr(x), lambda x: ndtr(x) + x * _pdf(x),
                      lambda x: (2 - x * x) * _pdf(x), zeros=(0.0,), scale=2.0, width=10.0,
                      tails=((0.0, 0.0), (0.0, 1.0)),
                      closed={"A2": _A2, "D2": _D2, "dA2": _dA2, "K": _K, "Kd": _Kd},
                      torch_phi=_torch_gelu)


register_activation("gelu", gelu)
