"""SiLU / swish x sigmoid(x): analytic in the strip |Im x| < pi; relu(x) to double precision
beyond |x| = 40 (relative deviation e^-|x|)."""
import numpy as np

from ..special import expit
from .base import Activation, register_activation


def _d1(x):
    s, t = expit(x), expit(-x)
    return s * (1 + x * t)


def _d2(x):
    s, t = expit(x), expit(-x)
    return s * t * (2 + x * (t - s))


def _torch_silu(x):
    import torch
    return torch.nn.functional.silu(x)


def silu() -> Activation:
    """x / (1 + exp(-x))."""
    return Activation("silu", lambda x: x * expit(x), _d1, _d2, zeros=(0.0,), scale=np.pi, width=40.0,
                      tails=((0.0, 0.0), (0.0, 1.0)), torch_phi=_torch_silu)


register_activation("silu", silu, aliases=("swish",))
