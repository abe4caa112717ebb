"""ReLU: the arc-cosine kernel of degree 1 (Cho and Saul 2009) in closed form."""
import numpy as np

from .base import Activation, register_activation


def _K(q, c):
    """E[relu(u1) relu(u2)] = q / (2 pi) (sqrt(1 - c^2) + (pi - arccos c) c)."""
    c = np.clip(c, -1.0, 1.0)
    return q / (2 * np.pi) * (np.sqrt(1 - c * c) + (np.pi - np.arccos(c)) * c)


def _Kd(q, c):
    """E[relu'(u1) relu'(u2)] = (pi - arccos c) / (2 pi)."""
    return (np.pi - np.arccos(np.clip(c, -1, 1))) / (2 * np.pi) + 0 * q


def _torch_relu(x):
    import torch
    return torch.relu(x)


def relu() -> Activation:
    """max(x, 0); phi phi' = phi, so PK = K and PD = A2."""
    half = lambda q: np.full_like(q, 0.5)  # noqa: E731
    return Activation(
        "relu", lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float), np.zeros_like,
        kinks=(0.0,), zeros=(0.0,),
        closed={"A2": lambda q: q / 2, "dA2": half, "D2": half, "PD": lambda q: q / 2, "K": _K,
                "Kd": _Kd, "PK": _K},
        torch_phi=_torch_relu)


register_activation("relu", relu)
