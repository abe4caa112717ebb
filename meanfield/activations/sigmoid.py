"""Logistic sigmoid: analytic in the strip |Im x| < pi; 0 or 1 to double precision beyond |x| = 40
(e^-40 = 4e-18)."""
import numpy as np

from ..special import expit
from .base import Activation, register_activation


def _d1(x):
    return expit(x) * expit(-x)  # s (1 - s) without cancellation


def _d2(x):
    return _d1(x) * (expit(-x) - expit(x))


def _torch_sigmoid(x):
    import torch
    return torch.sigmoid(x)


def sigmoid() -> Activation:
    """1 / (1 + exp(-x))."""
    return Activation("sigmoid", expit, _d1, _d2, bounded=True, scale=np.pi, width=40.0,
                      tails=((0.0, 0.0), (1.0, 0.0)), torch_phi=_torch_sigmoid)


register_activation("sigmoid", sigmoid)
