"""Logistic sigmoid: analytic in the strip |Im x| < pi."""
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
    return Activation("sigmoid", expit, _d1, _d2, bounded=True, strip=np.pi, torch_phi=_torch_sigmoid)


register_activation("sigmoid", sigmoid)
