"""erf(a x): the arcsin kernel (Williams 1997) in closed form; PD and PK by quadrature."""
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

    # (1 + 2 a^2 q)^2 - (2 a^2 q c)^2 as a product, with 1 - c and 1 + c exact near c = +-1: the
    # difference of squares loses every digit of 1 - c^2 at large q
    def _sqrt_det(q, c):  # square roots taken apart: no overflow below q ~ 1e300
        return np.sqrt(1 + 2 * a2 * q * (1 - c)) * np.sqrt(1 + 2 * a2 * q * (1 + c))

    def K(q, c):
        q, c = np.broadcast_arrays(np.asarray(q, float), np.asarray(c, float))
        return 2 / np.pi * np.arctan2(2 * a2 * q * c, _sqrt_det(q, c))  # arcsin(2a^2qc / (1 + 2a^2q))

    def Kd(q, c):
        return 4 * a2 / np.pi / _sqrt_det(np.asarray(q, float), np.asarray(c, float))

    def torch_phi(x):
        import torch
        return torch.erf(a * x)

    name = "erf" if np.isclose(a, PAPER_SCALE, rtol=0, atol=1e-15) else f"erf(scale={a:g})"
    return Activation(
        name, lambda x: erf(a * x), lambda x: k * np.exp(-a2 * x * x),
        lambda x: -2 * a2 * x * k * np.exp(-a2 * x * x), zeros=(0.0,), bounded=True,
        # erfc(6) = 2e-17; panels of 3 / (0.9 a) resolve erf's turn (measured, Gauss-Legendre 16)
        scale=0.9 / a, width=6.5 / a, tails=((-1.0, 0.0), (1.0, 0.0)),
        closed={"A2": lambda q: K(q, 1.0), "D2": lambda q: 4 * a2 / np.pi / np.sqrt(1 + 4 * a2 * q),
                "dA2": lambda q: 4 * a2 / np.pi / (1 + 2 * a2 * q) / np.sqrt(1 + 4 * a2 * q),
                "K": K, "Kd": Kd},
        torch_phi=torch_phi)


register_activation("erf", erf_activation)
