"""GELU x Phi(x) (the exact form, not the tanh approximation); entire."""
import numpy as np

from ..special import ndtr
from .base import Activation, register_activation

_SQRT_2PI = np.sqrt(2 * np.pi)


def _pdf(x):
    return np.exp(-0.5 * x * x) / _SQRT_2PI


def _torch_gelu(x):
    import torch
    return torch.nn.functional.gelu(x)  # exact x Phi(x) (approximate="none")


def gelu() -> Activation:
    """x Phi(x), Phi the standard normal CDF."""
    return Activation("gelu", lambda x: x * ndtr(x), lambda x: ndtr(x) + x * _pdf(x),
                      lambda x: (2 - x * x) * _pdf(x), zeros=(0.0,), torch_phi=_torch_gelu)


register_activation("gelu", gelu)
