"""Activations: phi, phi', phi'', closed-form Gaussian integrals and the torch twin, one file each.

The registry lists the built-in activations in this order; ``get_activation(name)`` returns one.
To add an activation, write one module like :mod:`meanfield.activations.silu` (build an
:class:`Activation`, call :func:`register_activation`), import it below, and test it against
quadrature (docs/THEORY.md §13).
"""
from .base import Activation, get_activation, register_activation, registered_activations
from . import linear, relu, tanh, hard_tanh, erf, sigmoid, gelu, silu  # noqa: F401  (registration)
from .erf import erf_activation

ACTIVATIONS = registered_activations()

__all__ = ["Activation", "ACTIVATIONS", "get_activation", "register_activation",
           "registered_activations", "erf_activation"]
