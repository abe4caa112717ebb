"""scipy.special functions imported on first use.

Importing scipy.special roughly doubles the start-up time of ``python -m meanfield.depthscale``,
and the tanh, ReLU and linear paths never need it.
"""
from __future__ import annotations

__all__ = ["erf", "expit", "gammainc", "ndtr", "ndtri", "owens_t"]


def erf(x):
    from scipy.special import erf as f
    return f(x)


def expit(x):
    """Logistic sigmoid 1 / (1 + exp(-x)) without overflow."""
    from scipy.special import expit as f
    return f(x)


def gammainc(a, x):
    """Regularised lower incomplete gamma function P(a, x)."""
    from scipy.special import gammainc as f
    return f(a, x)


def ndtr(x):
    """Standard normal CDF."""
    from scipy.special import ndtr as f
    return f(x)


def ndtri(p):
    """Inverse of the standard normal CDF."""
    from scipy.special import ndtri as f
    return f(p)


def owens_t(h, a):
    """Owen's T function T(h, a)."""
    from scipy.special import owens_t as f
    return f(h, a)
