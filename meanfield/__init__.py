"""meanfield: mean-field theory of deep networks with dropout-like noise.

The numeric core imports only numpy and scipy. ``keep`` is always the keep probability rho
(rho = 1: no dropout); ``drop`` = 1 - rho is PyTorch's ``p`` and Keras' ``rate``.
"""
from .activations import ACTIVATIONS, Activation, erf_activation, get_activation
from .gauss import ConvergenceError
from .maps import (MeanFieldResult, NoFixedPointError, analyze, c_map, c_star, chi_1, chi_c, chi_q,
                   covariance_map, depth_scale, gradient_depth_scale, q_map, q_star)
from .noise import NOISE_KINDS, Noise
from .phase import PhaseDiagram, critical_sigma_w2, phase_diagram

__all__ = [
    "ACTIVATIONS", "Activation", "erf_activation", "get_activation", "ConvergenceError",
    "MeanFieldResult", "NoFixedPointError", "analyze", "c_map", "c_star", "chi_1", "chi_c", "chi_q",
    "covariance_map", "depth_scale", "gradient_depth_scale", "q_map", "q_star", "NOISE_KINDS", "Noise",
    "GradientMetrics", "gradient_metrics", "PhaseDiagram", "critical_sigma_w2", "phase_diagram",
]
__version__ = "0.1.0"


def __getattr__(name):
    # gradients is also the `python -m meanfield.gradients` CLI: importing it eagerly here would
    # make runpy warn that the module was imported before being run as __main__
    if name in ("gradient_metrics", "GradientMetrics"):
        from . import gradients
        return getattr(gradients, name)
    raise AttributeError(f"module 'meanfield' has no attribute {name!r}")
