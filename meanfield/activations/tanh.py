"""tanh: no closed forms; analytic in the strip |Im x| < pi/2 (poles at +-i pi/2), and sign(x) to
double precision beyond |x| = 20 (1 - |tanh x| = 2 e^(-2|x|) / (1 + e^(-2|x|)) < 1e-17)."""
import numpy as np

from .base import Activation, register_activation


def sech2(x):
    """1 - tanh(x)^2 without cancellation (relative accuracy matters in the tails)."""
    e = np.array(x, dtype=float)  # a copy (an array even for a scalar x) to work on in place
    np.abs(e, out=e)
    e *= -2.0
    np.exp(e, out=e)
    den = e + 1.0
    den *= den
    e *= 4.0
    e /= den  # 4 e^{-2|x|} / (1 + e^{-2|x|})^2, in place: this is the hot loop of tanh's Kd
    return e


def _torch_tanh(x):
    import torch
    return torch.tanh(x)


def tanh() -> Activation:
    """tanh(x), the trainability papers' activation."""
    return Activation("tanh", np.tanh, sech2, lambda x: -2 * np.tanh(x) * sech2(x),
                      zeros=(0.0,), bounded=True, scale=np.pi / 2, width=20.0,
                      tails=((-1.0, 0.0), (1.0, 0.0)), torch_phi=_torch_tanh)


register_activation("tanh", tanh)
