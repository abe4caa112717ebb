"""The noise-layer protocol, its shared machinery and the registry (docs/THEORY.md §2, §13).

A noise layer is a frozen dataclass subclassing :class:`NoiseLayer`. It knows

- its Gaussian moments for the maps: ``second_moment`` E[g^2], ``second_moment_slope`` d/dq E[g^2],
  ``deriv_second_moment`` E[g'^2], ``pair_moments`` E[gbar(u1) gbar(u2)], E[gbar'(u1) gbar'(u2)];
- its exact (no-GIA) backward ingredients: ``transpose_gain`` gamma and the source terms
  ``backprop_source_single`` S_1 = E[g'^2 h^2], ``backprop_source_pair`` S_2 (docs/THEORY.md §4);
- its torch forward: unit noises (``acts_on = "units"``) map uniforms u to the noise xi
  (``torch_xi``) and apply g to post-activations (``torch_g``); weight noises
  (``acts_on = "weights"``) mask weights (``torch_weight``).

Numeric parameters marked ``vectorised`` in their field metadata may be arrays; they broadcast
against sigma_w^2 and sigma_b^2 like every other parameter of the maps. ``keep`` is always the
keep probability rho; ``drop = 1 - rho`` is accepted instead wherever a layer has ``keep``.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import field, fields
from typing import Any, ClassVar

import numpy as np

from .. import kernels
from ..gauss import RTOL
from ..validation import KEEP, checked, keep_from

__all__ = ["NoiseLayer", "register_noise", "registered_noises", "noise_class", "make_noise",
           "noise_from_spec", "keep_field", "param_field"]

UNITS, WEIGHTS = "units", "weights"


def param_field(help: str, default=None, *, vectorised=True, cli_type=float, choices=None):
    """A dataclass field for a noise parameter; ``help`` is shown by the command lines."""
    return field(default=default, metadata={"help": help, "vectorised": vectorised,
                                            "cli_type": cli_type, "choices": choices})


def keep_field():
    """The keep probability field shared by every noise that drops something."""
    return param_field("keep probability rho in (0, 1] (the papers' 'dropout rate'); "
                       "drop = 1 - rho is PyTorch's p")


class NoiseLayer:
    """Base class of the noise layers (see the module docstring for the protocol).

    Subclasses are ``@dataclass(frozen=True, eq=False, kw_only=True)`` and registered with
    :func:`register_noise`. Equality and hashing compare the class and parameter values.
    """

    name: ClassVar[str]
    acts_on: ClassVar[str] = UNITS

    # ------------------------------------------------------------------ parameters
    def _set(self, name, value):
        object.__setattr__(self, name, value)

    def _vector(self, name, valid, ok):
        """Validate a vectorised field in place: a Python float if scalar, else a float array."""
        arr = checked(name, getattr(self, name), valid, ok)
        self._set(name, float(arr) if arr.ndim == 0 else arr)

    def _keep(self, drop):
        """Resolve ``keep`` / ``drop`` (InitVar) into the validated ``keep`` field."""
        arr = keep_from(self.keep, drop)
        self._set("keep", float(arr) if arr.ndim == 0 else arr)

    @classmethod
    def param_fields(cls):
        """The dataclass fields that are noise parameters (in order)."""
        return [f for f in fields(cls) if "help" in f.metadata]

    def param_values(self) -> dict[str, Any]:
        """{parameter name: value} (floats, arrays or strings)."""
        return {f.name: getattr(self, f.name) for f in self.param_fields()}

    @property
    def shape(self) -> tuple[int, ...]:
        """Broadcast shape of the vectorised parameters (() for scalars)."""
        vals = [np.asarray(getattr(self, f.name)) for f in self.param_fields() if f.metadata["vectorised"]]
        return np.broadcast_shapes(*(v.shape for v in vals)) if vals else ()

    def _map_vectorised(self, fn) -> "NoiseLayer":
        changes = {f.name: fn(np.asarray(getattr(self, f.name), float))
                   for f in self.param_fields() if f.metadata["vectorised"]}
        return dataclasses.replace(self, **changes) if changes else self

    def broadcast_to(self, shape) -> "NoiseLayer":
        """The same layer with every vectorised parameter broadcast to ``shape``."""
        return self._map_vectorised(lambda a: np.broadcast_to(a, shape).copy())

    def reshape(self, shape) -> "NoiseLayer":
        """The same layer with every (already broadcast) vectorised parameter reshaped."""
        return self._map_vectorised(lambda a: a if a.ndim == 0 else a.reshape(shape))

    def take(self, idx) -> "NoiseLayer":
        """The layer at the parameter points ``idx`` (an index into broadcast parameters)."""
        return self._map_vectorised(lambda a: a if a.ndim == 0 else a[idx])

    def scalar(self) -> "NoiseLayer":
        """This layer if every parameter is a scalar; else ValueError (torch needs scalars)."""
        if self.shape != ():
            raise ValueError(f"{self.name} noise with array parameters cannot drive a torch "
                             "network; give one value per parameter")
        return self

    def is_identity(self):
        """Boolean array: True where the layer does nothing (g = phi; e.g. keep = 1)."""
        return np.asarray(getattr(self, "keep", 1.0)) == 1.0

    def spec(self) -> str:
        """Canonical text form, e.g. ``dropout(keep=0.9)``; :func:`noise_from_spec` inverts it."""
        parts = []
        for name, v in self.param_values().items():
            if np.ndim(v) != 0:
                raise ValueError("spec() needs scalar parameters")
            parts.append(f"{name}={v!r}" if isinstance(v, str) else f"{name}={float(v)!r}")
        return f"{self.name}({', '.join(parts)})"

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        a, b = self.param_values(), other.param_values()
        return all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)

    def __hash__(self):
        return hash((type(self),) + tuple(np.asarray(v).tobytes() + str(np.shape(v)).encode()
                                          for v in self.param_values().values()))

    # ------------------------------------------------------------------ theory (numpy)
    def second_moment(self, act, q):
        """M2(q) = E_{z, xi}[g(sqrt(q) z, xi)^2]; the variance map is sigma_w^2 M2 + sigma_b^2.

        Every layer has g(z, xi) = 0 where phi(z) = 0, so M2(0) = 0 when phi(0) = 0: the fixed
        point q* = 0 at sigma_b^2 = 0 (:func:`~meanfield.fixed_points.solve_q_star`) relies on it.
        """
        raise NotImplementedError

    def second_moment_slope(self, act, q):
        """dM2/dq = E[g'^2 + g g''] (Gaussian integration by parts); chi_q = sigma_w^2 dM2/dq.

        At q = 0 the limit q -> 0, which decides whether the origin attracts; it may be +inf
        (Sparseout with s < 2, where M2 ~ q^(s/2)).
        """
        raise NotImplementedError

    def second_moment_and_slope(self, act, q):
        """(M2, dM2/dq) together (one quadrature pass where possible)."""
        return self.second_moment(act, q), self.second_moment_slope(act, q)

    def deriv_second_moment(self, act, q):
        """D(q) = E[g'(sqrt(q) z, xi)^2]; chi_1 = sigma_w^2 D(q*). May be +inf (Sparseout with
        s <= 1); at q = 0 the limit q -> 0 (the toolkit passes Q_MIN for q* = 0)."""
        raise NotImplementedError

    def bounded_second_moment(self):
        """E_xi[g^2] where |phi| = 1: an upper bound of M2 for activations with |phi| <= 1."""
        raise NotImplementedError

    def pair_moments(self, act, q, c, keys=("K", "Kd"), rtol=RTOL):
        """E[gbar(u1) gbar(u2)] (``K``) and E[gbar'(u1) gbar'(u2)] (``Kd``), gbar = E_xi[g].

        The default is gbar = phi (noise of mean zero on top of phi), true of every layer here.
        """
        return kernels.pair(act, keys, q, c, rtol)

    def transpose_gain(self):
        """gamma: the transpose correction of the exact backprop is a_L = 2 sigma_w^2 gamma
        E[phi'^2 + phi phi''] (1 for unit noise)."""
        return np.ones(self.shape)

    def backprop_source_single(self, act, q):
        """S_1 = E[g'^2 h^2], h the vector the transpose correction multiplies (docs/THEORY.md §4)."""
        raise NotImplementedError

    def backprop_source_pair(self, act, q, c):
        """S_2 = E[(g' h)bar(u1) (g' h)bar(u2)] (docs/THEORY.md §4)."""
        raise NotImplementedError

    def q_limit(self, act):
        """The largest q at which E[g(sqrt(q) z, xi)^2] stays within the float range (shape
        self.shape); the search for q* ends there. inf unless the layer raises |phi| to a power."""
        return np.full(self.shape, np.inf)

    def missing_fixed_point_hint(self, act) -> str:
        """A short reason shown when the variance map has no finite fixed point ('' if none)."""
        return ""

    # ------------------------------------------------------------------ torch
    def torch_xi(self, u):
        """Unit noise: the noise xi from uniforms u in [0, 1) (same shape)."""
        raise NotImplementedError(f"{self.name} noise acts on {self.acts_on}, not on units")

    def torch_g(self, p, xi):
        """Unit noise: x~ = g(z, xi) from p = phi(z), differentiable in p."""
        raise NotImplementedError(f"{self.name} noise acts on {self.acts_on}, not on units")

    def torch_weight(self, w, u):
        """Weight noise: the noisy weights from w and uniforms u of w's shape or with extra
        leading (per-example) dimensions; the result has the broadcast shape."""
        raise NotImplementedError(f"{self.name} noise acts on {self.acts_on}, not on weights")


_REGISTRY: dict[str, type[NoiseLayer]] = {}


def register_noise(cls):
    """Class decorator: register a noise layer under ``cls.name`` (CLIs list the registry)."""
    if cls.name in _REGISTRY:
        raise ValueError(f"noise {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def registered_noises() -> tuple[str, ...]:
    """Names of the registered noise layers, in registration order."""
    return tuple(_REGISTRY)


def noise_class(name: str) -> type[NoiseLayer]:
    """The registered class of a noise name (ValueError listing the choices otherwise)."""
    key = name.lower() if isinstance(name, str) else name
    if key not in _REGISTRY:
        raise ValueError(f"noise must be one of {', '.join(map(repr, _REGISTRY))} or a noise layer "
                         f"object, got {name!r}")
    return _REGISTRY[key]


def make_noise(noise="dropout", *, keep=None, drop=None, **params) -> NoiseLayer:
    """A noise layer from a name and keyword parameters (the string convenience form).

    Parameters
    ----------
    noise : str or NoiseLayer
        A registered name (``"none"``, ``"dropout"``, ``"sparseout"``, ...) or a layer object,
        returned unchanged (then no other argument may be given).
    keep, drop : array_like, optional
        Keep probability rho or drop probability 1 - rho (not both); default keep = 1. For a
        layer without ``keep`` (``"none"``, Gaussian noise) only keep = 1 / drop = 0 is accepted.
    **params
        The layer's other parameters (e.g. ``s``, ``backward`` for Sparseout); None means default.

    Raises
    ------
    ValueError
        Unknown noise, a parameter the layer does not have, or an invalid value.
    """
    params = {k: v for k, v in params.items() if v is not None}
    if isinstance(noise, NoiseLayer):
        if keep is not None or drop is not None or params:
            given = [n for n, v in (("keep", keep), ("drop", drop)) if v is not None] + list(params)
            raise ValueError(f"noise is already a layer object ({noise!r}); do not also pass "
                             f"{', '.join(given)}")
        return noise
    cls = noise_class(noise)
    names = [f.name for f in cls.param_fields()]
    unknown = [p for p in params if p not in names]
    if unknown:
        raise ValueError(f"{', '.join(unknown)} is not a parameter of {cls.name} noise "
                         f"(its parameters: {', '.join(names) or 'none'})")
    if "keep" in names:
        params["keep"] = keep_from(keep, drop, default=1.0)
    elif keep is not None or drop is not None:
        k = keep_from(keep, drop)
        if np.any(k != 1):
            raise ValueError(f"noise={cls.name!r} needs keep = 1: it has no {KEEP} (use "
                             "noise='dropout' or another dropping layer for keep < 1)")
    return cls(**params)


_SPEC = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$")


def noise_from_spec(text: str) -> NoiseLayer:
    """Parse :meth:`NoiseLayer.spec` text, e.g. ``"sparseout(keep=0.9, s=1.5, backward='code')"``."""
    m = _SPEC.match(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"noise spec must look like name(param=value, ...), got {text!r}")
    kwargs = {}
    for item in filter(None, (s.strip() for s in (m.group(2) or "").split(","))):
        key, sep, val = item.partition("=")
        if not sep:
            raise ValueError(f"noise spec parameter must be name=value, got {item!r} in {text!r}")
        val = val.strip()
        try:
            kwargs[key.strip()] = val.strip("'\"") if val[:1] in "'\"" else float(val)
        except ValueError:
            raise ValueError(f"noise spec value of {key.strip()!r} must be a number or a quoted "
                             f"string, got {val!r} in {text!r}") from None
    keep = kwargs.pop("keep", None)
    return make_noise(m.group(1), keep=keep, **kwargs)
