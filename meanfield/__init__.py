"""meanfield: mean-field theory of deep networks with dropout-like noise.

The numeric core imports only numpy and scipy. ``keep`` is always the keep probability rho
(rho = 1: no dropout); ``drop`` = 1 - rho is PyTorch's ``p`` and Keras' ``rate``. Modules, bottom
to top as the mathematics: ``gauss`` (Gaussian integrals), ``activations``, ``kernels``,
``noise``, ``maps``, ``fixed_points``, ``depth_scales``, ``backprop``, ``phase``, ``kwinners``;
``simulation`` and ``nn`` (torch, imported only when used); ``cli`` (command lines).
docs/THEORY.md is the mathematics, cited by section.
"""
from .activations import ACTIVATIONS, Activation, erf_activation, get_activation
from .backprop import GradientMetrics, gradient_metrics
from .depth_scales import (MeanFieldResult, analyze, c_star, chi_1, chi_c, chi_q, depth_scale,
                           gradient_depth_scale, q_star)
from .fixed_points import NoFixedPointError
from .gauss import ConvergenceError
from .maps import c_map, covariance_map, q_map
from .noise import (NOISE_LAYERS, DropConnect, Dropout, GaussianNoise, NoiseLayer, NoNoise,
                    Sparseout, make_noise, noise_from_spec)
from .phase import PhaseDiagram, critical_sigma_w2, phase_diagram

__all__ = [
    "ACTIVATIONS", "Activation", "erf_activation", "get_activation", "ConvergenceError",
    "MeanFieldResult", "NoFixedPointError", "analyze", "c_map", "c_star", "chi_1", "chi_c", "chi_q",
    "covariance_map", "depth_scale", "gradient_depth_scale", "q_map", "q_star", "NOISE_LAYERS",
    "NoiseLayer", "NoNoise", "Dropout", "Sparseout", "GaussianNoise", "DropConnect", "make_noise",
    "noise_from_spec",
    "GradientMetrics", "gradient_metrics", "PhaseDiagram", "critical_sigma_w2", "phase_diagram",
]
__version__ = "0.2.0"
