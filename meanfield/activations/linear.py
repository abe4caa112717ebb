"""phi(x) = x: every Gaussian integral in closed form."""
import numpy as np

from .base import Activation, ones, register_activation, zeros


def linear() -> Activation:
    """The identity activation (THEORY §4's linear check: Huang et al.'s closed forms)."""
    return Activation(
        "linear", lambda x: np.asarray(x, float), ones, zeros, zeros=(0.0,), scale=np.inf,
        width=0.0, tails=((0.0, 1.0), (0.0, 1.0)),
        closed={"A2": lambda q: q, "dA2": ones, "D2": ones, "PD": lambda q: q,
                "K": lambda q, c: q * c, "Kd": lambda q, c: np.ones_like(q * c),
                "PK": lambda q, c: q * c},
        torch_phi=lambda x: x)


register_activation("linear", linear, aliases=("identity",))
