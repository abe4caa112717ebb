"""erf(a x): the arcsin kernel (Williams 1997) in closed form."""
import numpy as np

from ..special import erf
from .base import Activation, register_activation

PAPER_SCALE = np.sqrt(np.pi) / 2  # phi'(0) = 1, the papers' convention


def erf_activation(scale=PAPER_SCALE) -> Activation:
    """phi = erf(scale x); the papers use scale = sqrt(pi)/2 so that phi'(0) = 1.

    Raises
    ------
    ValueError
        If ``scale`` is not a positive finite number.
    """
    a = float(scale)
    if not (np.isfinite(a) and a > 0):
        raise ValueError(f"erf scale must be a positive finite number, got {scale!r}")
    a2 = a * a
    k = 2 * a / np.sqrt(np.pi)

    def K(q, c):
        return 2 / np.pi * np.arcsin(2 * a2 * q * c / (1 + 2 * a2 * q))

    def Kd(q, c):
        return 4 * a2 / np.pi / np.sqrt((1 + 2 * a2 * q) ** 2 - (2 * a2 * q * c) ** 2)

    def torch_phi(x):
        import torch
        return torch.erf(a * x)

    name = "erf" if np.isclose(a, PAPER_SCALE, rtol=0, atol=1e-15) else f"erf(scale={a:g})"
    return Activation(
        name, lambda x: erf(a * x), lambda x: k * np.exp(-a2 * x * x),
        lambda x: -2 * a2 * x * k * np.exp(-a2 * x * x), zeros=(0.0,), bounded=True,
        closed={"A2": lambda q: K(q, 1.0), "D2": lambda q: 4 * a2 / np.pi / np.sqrt(1 + 4 * a2 * q),
                "dA2": lambda q: 4 * a2 / (np.pi * (1 + 2 * a2 * q) * np.sqrt(1 + 4 * a2 * q)),
                "K": K, "Kd": Kd},
        torch_phi=torch_phi)


register_activation("erf", erf_activation)
