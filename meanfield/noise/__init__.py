"""Noise layers g(z, xi): the protocol, the registry and the built-in layers (docs/THEORY.md §2).

The registry lists the layers in the order below; ``make_noise("dropout", keep=0.9)`` builds one
from its name, ``noise_from_spec("dropout(keep=0.9)")`` from its text form. To add a noise layer,
write one module (a frozen dataclass subclassing :class:`NoiseLayer`, or
:class:`MultiplicativeNoise` if g = phi xi, decorated with :func:`register_noise`), import it
below, and test it (docs/THEORY.md §13).
"""
from .base import (NoiseLayer, make_noise, noise_class, noise_from_spec, register_noise,
                   registered_noises)
from .multiplicative import Dropout, MultiplicativeNoise, NoNoise
from .sparseout import Sparseout
from .gaussian import GaussianNoise
from .dropconnect import DropConnect

NOISE_LAYERS = registered_noises()

__all__ = ["NoiseLayer", "MultiplicativeNoise", "NoNoise", "Dropout", "Sparseout", "GaussianNoise",
           "DropConnect", "NOISE_LAYERS",
           "make_noise", "noise_class", "noise_from_spec", "register_noise", "registered_noises"]
