"""The :class:`Activation` record, its registry, and user-defined activations.

An activation is a frozen record of numpy callables phi, phi', phi'' plus its *structure*, which
lets the integrators (:mod:`meanfield.gauss`) work at a cost independent of the variance
(docs/THEORY.md §9): ``kinks`` (x where phi' or phi'' jumps), ``zeros`` (x where phi changes sign,
the kinks of |phi|^s in Sparseout), ``scale`` (the length on which phi varies: the distance from
the real axis of its nearest complex singularity, or where an entire phi turns), ``width`` (phi
is its asymptote to double precision beyond |x| = width) and ``tails`` (that asymptote, a line on
each side). Then come closed-form Gaussian integrals keyed by name (see :mod:`meanfield.kernels`)
and the torch twin ``torch_phi`` used by the simulator and the training code. Closed forms take
the variance q (and correlation c for pairs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np

__all__ = ["Activation", "register_activation", "get_activation", "registered_activations", "zeros",
           "ones"]


@dataclass(frozen=True)
class Activation:
    """An element-wise nonlinearity with its first two derivatives (numpy, vectorised).

    Parameters
    ----------
    name : str
        Registry name (or a description for user-defined activations).
    phi, dphi, d2phi : callable
        phi, phi' and phi'' on float64 arrays of any shape and on Python or numpy scalars; a
        float result of the input's shape.
    kinks : tuple of float
        x positions where phi' or phi'' is discontinuous (piecewise quadrature splits there).
    zeros : tuple of float
        x positions where phi changes sign (kinks of |phi|^s).
    bounded : bool
        |phi| <= 1 everywhere (gives a bracket for q*).
    scale : float
        Length (x units) on which phi varies inside |x| <= width: half-width of the strip
        |Im x| < scale where phi is analytic and of moderate size (tanh: pi/2, its poles; an
        entire phi: where it turns). inf for a piecewise-linear phi (all structure in ``kinks``).
    width : float
        Beyond |x| = width, phi equals ``tails`` to double precision (tanh: 20); inf if unknown
        (then the cost of an integral grows with the variance, and a huge variance is refused).
    tails : tuple or None
        ((a_left, b_left), (a_right, b_right)): phi -> a + b x for x -> -inf and +inf. Used to keep
        d/dq E[phi^2] accurate at large variance (:mod:`meanfield.kernels`). None if unknown.
    closed : mapping
        Closed-form Gaussian integrals by key (``A2``, ``dA2``, ``D2``, ``PD``, ``K``, ``Kd``,
        ``PK``; :mod:`meanfield.kernels`).
    torch_phi : callable or None
        phi on torch tensors (differentiable), for simulation and training; None if unknown.

    References
    ----------
    docs/THEORY.md §2 (the noise-layer abstraction), §13 (adding an activation).
    """

    name: str
    phi: Callable[[np.ndarray], np.ndarray]
    dphi: Callable[[np.ndarray], np.ndarray]
    d2phi: Callable[[np.ndarray], np.ndarray]
    kinks: tuple[float, ...] = ()
    zeros: tuple[float, ...] = ()
    bounded: bool = False
    scale: float = 1.0
    width: float = np.inf
    tails: tuple | None = None
    closed: Mapping[str, Callable] = field(default_factory=dict, compare=False, hash=False)
    torch_phi: Callable | None = field(default=None, compare=False, hash=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "closed", MappingProxyType(dict(self.closed)))
        if not (self.scale > 0 and self.width >= 0):
            raise ValueError(f"activation {self.name!r}: scale must be > 0 and width >= 0, got "
                             f"scale={self.scale!r}, width={self.width!r}")

    @property
    def structure(self):
        """Keyword arguments describing phi to :func:`meanfield.gauss.expect` (and its derivatives:
        phi' and phi phi' share phi's kinks, scale and width)."""
        return {"kinks": self.kinks, "scale": self.scale, "width": self.width}

    @property
    def zero_at_origin(self) -> bool:
        """phi(0) = 0: then q = 0 is a fixed point of the variance map at sigma_b^2 = 0 (every
        noise layer has g = 0 where phi = 0), and Stein's form of d/dq E[phi^2] has no O(1/q)
        cancellation at small q."""
        return bool(self.phi(np.zeros(1))[0] == 0)

    def __repr__(self):
        return f"Activation({self.name!r})"

    def torch(self, x):
        """phi(x) on a torch tensor (differentiable).

        Raises
        ------
        ValueError
            If the activation has no torch twin (build it with ``torch_phi=``).
        """
        if self.torch_phi is None:
            raise ValueError(f"activation {self.name!r} has no torch twin; pass torch_phi= to "
                             "Activation.from_callables (from_sympy builds one automatically)")
        return self.torch_phi(x)

    @classmethod
    def from_sympy(cls, expr, symbol=None, name=None, *, kinks=(), zeros=None, bounded=False,
                   scale=1.0, width=np.inf, tails=None):
        """An activation from a sympy expression in one symbol: exact derivatives, and a torch twin.

        Parameters
        ----------
        expr : sympy expression or str
            phi(x).
        symbol : sympy.Symbol, optional
            The variable (default: the expression's only free symbol).
        name : str, optional
            Defaults to ``str(expr)``.
        kinks, bounded, scale, width, tails : see :class:`Activation`.
            The defaults (scale 1, width inf) are safe for moderate variances; declare width and
            tails for integrals whose cost does not grow with the variance.
        zeros : tuple of float, optional
            Defaults to the real roots sympy finds (used only by Sparseout's |phi|^s).

        Raises
        ------
        ValueError
            If ``expr`` does not have exactly one free symbol.
        """
        import sympy as sp  # only here: the numeric core must not need sympy

        expr = sp.sympify(expr)
        if symbol is None:
            free = sorted(expr.free_symbols, key=str)
            if len(free) != 1:
                raise ValueError(f"expr must have exactly one free symbol, found {free}")
            symbol = free[0]
        d1, d2 = sp.diff(expr, symbol), sp.diff(expr, symbol, 2)
        if zeros is None:
            try:
                zeros = tuple(float(r) for r in sp.solve(sp.Eq(expr, 0), symbol) if r.is_real)
            except (NotImplementedError, TypeError):
                zeros = ()
        fns = [_vectorised(sp.lambdify(symbol, e, modules=["numpy", "scipy"])) for e in (expr, d1, d2)]
        # torch's lambdify printer needs numeric constants as floats (torch.sqrt(2) fails) and
        # Max/Min/Heaviside as Piecewise (torch.where)
        texpr = expr.rewrite(sp.Piecewise).replace(lambda e: e.is_number and not e.is_Atom,
                                                   lambda e: e.evalf(20))
        return cls(name or str(expr), *fns, kinks=tuple(kinks), zeros=tuple(zeros), bounded=bounded,
                   scale=scale, width=width, tails=tails,
                   torch_phi=_torch_vectorised(sp.lambdify(symbol, texpr, modules="torch")))

    @classmethod
    def from_callables(cls, name, phi, dphi, d2phi, *, kinks=(), zeros=(), bounded=False,
                       scale=1.0, width=np.inf, tails=None, torch_phi=None):
        """An activation from numpy callables phi, phi', phi'' (you vouch for them, and for the
        structure ``kinks``, ``scale``, ``width``, ``tails``: see :class:`Activation`).

        ``torch_phi`` (phi on torch tensors) is needed only to simulate or train with it.
        """
        return cls(name, _vectorised(phi), _vectorised(dphi), _vectorised(d2phi),
                   kinks=tuple(kinks), zeros=tuple(zeros), bounded=bounded, scale=scale,
                   width=width, tails=tails, torch_phi=torch_phi)


def zeros(x):
    """0.0 in x's shape (a scalar x gives a 0-d array): phi'' of a piecewise-linear phi."""
    return np.zeros(np.shape(x))


def ones(x):
    """1.0 in x's shape: phi' of the identity."""
    return np.ones(np.shape(x))


def _vectorised(fn):
    """lambdify returns a scalar for constant expressions; broadcast it to the input's shape."""
    def wrapped(x):
        x = np.asarray(x, dtype=float)
        return np.broadcast_to(np.asarray(fn(x), dtype=float), x.shape)
    return wrapped


def _torch_vectorised(fn):
    def wrapped(x):
        import torch
        out = fn(x)
        return out if isinstance(out, torch.Tensor) and out.shape == x.shape else \
            torch.as_tensor(out, dtype=x.dtype, device=x.device).expand(x.shape) + 0 * x
    return wrapped


_REGISTRY: dict[str, Callable[..., Activation]] = {}
_ALIASES: dict[str, str] = {}
_CACHE: dict[str, Activation] = {}


def register_activation(name: str, factory: Callable[..., Activation], aliases=()) -> None:
    """Register ``factory(**params) -> Activation`` under ``name`` (and ``aliases``).

    Called once by each activation's module; CLIs take their choices from the registry.
    """
    if name in _REGISTRY or name in _ALIASES:
        raise ValueError(f"activation {name!r} is already registered")
    _REGISTRY[name] = factory
    for a in aliases:
        _ALIASES[a] = name


def registered_activations() -> tuple[str, ...]:
    """Names of the registered activations, in registration order."""
    return tuple(_REGISTRY)


def get_activation(activation, **params) -> Activation:
    """An :class:`Activation` from a registered name (or an Activation itself).

    Parameters
    ----------
    activation : str or Activation
        A name in :func:`registered_activations` (case-insensitive; aliases such as ``htanh``,
        ``swish``, ``identity`` accepted) or an Activation.
    **params
        Passed to the activation's constructor (``get_activation("erf", scale=1.0)``).

    Raises
    ------
    ValueError
        For an unknown name, or parameters given with an Activation object.
    """
    if isinstance(activation, Activation):
        if params:
            raise ValueError("parameters can only be given with an activation name")
        return activation
    if not isinstance(activation, str):
        raise ValueError(f"activation must be a name or an Activation, got {type(activation).__name__}")
    key = _ALIASES.get(activation.lower(), activation.lower())
    if key not in _REGISTRY:
        raise ValueError(f"unknown activation {activation!r}; choose one of "
                         f"{', '.join(_REGISTRY)} or build one with Activation.from_sympy / "
                         "Activation.from_callables")
    if params:
        return _REGISTRY[key](**params)
    if key not in _CACHE:
        _CACHE[key] = _REGISTRY[key]()
    return _CACHE[key]
