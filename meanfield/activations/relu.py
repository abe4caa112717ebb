"""ReLU: the arc-cosine kernel of degree 1 (Cho and Saul 2009) in closed form."""
import numpy as np

from .base import Activation, register_activation, zeros


def _K(q, c):
    """E[relu(u1) relu(u2)] = q / (2 pi) (sqrt(1 - c^2) + (pi - arccos c) c).

    With phi = arccos(-c) = pi - arccos c this is q (sin phi - phi cos phi) / (2 pi), which near
    c = -1 (phi -> 0) is O(phi^3) from O(phi) terms: there its Taylor series is summed instead
    (phi < 0.5, seven terms: truncation < 1e-18 relative).
    """
    q, c = np.broadcast_arrays(np.asarray(q, float), np.clip(np.asarray(c, float), -1.0, 1.0))
    phi = np.arccos(-c)  # -c exact; accurate near c = -1
    small = phi < 0.5
    p2 = phi * phi
    series = phi * p2 / 3 * (1 - p2 / 10 * (1 - p2 / 28 * (1 - p2 / 54 * (1 - p2 / 88 * (1 - p2 / 130
                                                                                          * (1 - p2 / 180))))))
    direct = np.sqrt((1 - c) * (1 + c)) + phi * c  # sin phi - phi cos phi, cos phi = -c
    return q / (2 * np.pi) * np.where(small, series, direct)


def _Kd(q, c):
    """E[relu'(u1) relu'(u2)] = (pi - arccos c) / (2 pi) = arccos(-c) / (2 pi)."""
    return np.arccos(-np.clip(c, -1, 1)) / (2 * np.pi) + 0 * np.asarray(q, float)


def _torch_relu(x):
    import torch
    return torch.relu(x)


def relu() -> Activation:
    """max(x, 0); phi phi' = phi, so PK = K and PD = A2."""
    half = lambda q: np.full_like(q, 0.5)  # noqa: E731
    return Activation(
        "relu", lambda x: np.maximum(x, 0.0), lambda x: np.where(np.greater(x, 0), 1.0, 0.0), zeros,
        kinks=(0.0,), zeros=(0.0,), scale=np.inf, width=0.0, tails=((0.0, 0.0), (0.0, 1.0)),
        closed={"A2": lambda q: q / 2, "dA2": half, "D2": half, "PD": lambda q: q / 2, "K": _K,
                "Kd": _Kd, "PK": _K},
        torch_phi=_torch_relu)


register_activation("relu", relu)
