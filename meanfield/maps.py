"""Forward maps of a noisy layer: variance, covariance and correlation (docs/THEORY.md §3).

Every public function takes the layer as ``(activation, sigma_w2, sigma_b2, keep=None, *,
noise="dropout", drop=None, **noise_params)``: ``noise`` is a registered name with its parameters
as keywords (``keep``/``drop``, Sparseout's ``s`` and ``backward``, ...) or a noise-layer object
(:mod:`meanfield.noise`). Numeric parameters broadcast like numpy arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import Activation, get_activation
from .gauss import ConvergenceError
from .kernels import Q_MIN
from .noise import NoiseLayer, make_noise
from .validation import C_ROUND, checked, correlation, finite_array

__all__ = ["Params", "params", "q_map", "covariance_map", "c_map", "check_q", "check_qc",
           "settle_correlation", "MEMORY_CAP", "POINT_BYTES", "chunk_slices", "per_chunk"]

SIGMA_W2 = "sigma_w2 (weight variance)"
SIGMA_B2 = "sigma_b2 (bias variance)"

# Parameter points are evaluated in chunks so that the quadrature work arrays of one call stay
# under MEMORY_CAP bytes. POINT_BYTES bounds the peak's growth per point of the costliest path
# (Sparseout's pair sources with s < 1: 1.5 MiB per point over 256 points, 2.3 over 4 to 12;
# hard tanh 0.4; tanh, GELU, SiLU < 0.1), measured with tracemalloc by
# benchmarks/bench_point_bytes.py and tests/test_edges_grid.py.
MEMORY_CAP = 256 * 2**20
POINT_BYTES = 3 * 2**20


def chunk_slices(n: int, point_bytes: int | None = None):
    """Slices cutting n points into chunks of at most MEMORY_CAP // point_bytes (>= 1) points
    (point_bytes defaults to POINT_BYTES, read at call time)."""
    step = max(1, int(MEMORY_CAP // (POINT_BYTES if point_bytes is None else point_bytes)))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


@dataclass(frozen=True)
class Params:
    """Validated parameters of a layer family, all broadcast to one shape.

    Attributes
    ----------
    act : Activation
    noise : NoiseLayer
        Vectorised parameters broadcast to ``shape``.
    sigma_w2, sigma_b2 : ndarray, shape ``shape``
    """

    act: Activation
    noise: NoiseLayer
    sigma_w2: np.ndarray
    sigma_b2: np.ndarray

    @property
    def shape(self):
        return self.sigma_w2.shape

    def ravel(self) -> "Params":
        """The same parameters as flat arrays (shape (n,))."""
        return Params(self.act, self.noise.reshape(-1), self.sigma_w2.ravel(), self.sigma_b2.ravel())

    def take(self, idx) -> "Params":
        """The parameter points ``idx``."""
        return Params(self.act, self.noise.take(idx), self.sigma_w2[idx], self.sigma_b2[idx])

    def broadcast_to(self, shape) -> "Params":
        """The same parameters broadcast to ``shape``."""
        return Params(self.act, self.noise.broadcast_to(shape),
                      np.broadcast_to(self.sigma_w2, shape).copy(),
                      np.broadcast_to(self.sigma_b2, shape).copy())


def per_chunk(fn, p: Params, *arrays, n_out=1):
    """fn(p_chunk, *array_chunks) over flat chunks of p and ``arrays`` broadcast together.

    ``fn`` returns one flat array (or a tuple of ``n_out``); the results are reassembled in the
    broadcast shape. Empty inputs give empty results without calling fn.
    """
    arrays = [np.asarray(a, float) for a in arrays]
    shape = np.broadcast_shapes(p.shape, *(a.shape for a in arrays))
    pf = p.broadcast_to(shape).ravel()
    flat = [np.broadcast_to(a, shape).ravel() for a in arrays]
    outs = [np.empty(pf.sigma_w2.size) for _ in range(n_out)]
    for sl in chunk_slices(pf.sigma_w2.size):
        res = fn(pf.take(sl), *(a[sl] for a in flat))
        for o, r in zip(outs, res if n_out > 1 else (res,)):
            o[sl] = r
    outs = [o.reshape(shape) for o in outs]
    return outs if n_out > 1 else outs[0]


def params(activation, sigma_w2, sigma_b2, keep=None, *, noise="dropout", drop=None,
           **noise_params) -> Params:
    """Validate and broadcast a layer's parameters.

    Parameters
    ----------
    activation : str or Activation
    sigma_w2 : array_like
        Weight variance sigma_w^2 > 0 (weights ~ N(0, sigma_w^2 / fan_in)).
    sigma_b2 : array_like
        Bias variance sigma_b^2 >= 0.
    keep, drop : array_like, optional
        Keep probability rho in (0, 1] or drop probability 1 - rho (not both; default keep = 1).
    noise : str or NoiseLayer
        Registered noise name or a layer object (then no keep/drop/noise_params).
    **noise_params
        Other parameters of the named noise (e.g. ``s``, ``backward``).

    Returns
    -------
    Params

    Raises
    ------
    ValueError
        Naming the offending parameter and its valid range.
    """
    act = get_activation(activation)
    nz = make_noise(noise, keep=keep, drop=drop, **noise_params)
    sw = checked(SIGMA_W2, sigma_w2, "be > 0", lambda a: a > 0)
    sb = checked(SIGMA_B2, sigma_b2, "be >= 0", lambda a: a >= 0)
    shape = np.broadcast_shapes(sw.shape, sb.shape, nz.shape)
    return Params(act, nz.broadcast_to(shape), np.broadcast_to(sw, shape).astype(float),
                  np.broadcast_to(sb, shape).astype(float))


def check_q(q) -> np.ndarray:
    """q as a float array of variances >= 0 (ValueError otherwise)."""
    q = finite_array("q (pre-activation variance)", q)
    if np.any(q < 0):
        raise ValueError(f"q (pre-activation variance) must be >= 0, got {q!r}")
    return q


def check_qc(q, c):
    """(q, c) as float arrays: variances >= 0 and correlations in [-1, 1] (within C_ROUND,
    clipped: a c-map output a few ulp above 1 is a valid input)."""
    return check_q(q), correlation(c)


def settle_correlation(c, what="c-map"):
    """Computed correlations clipped into [-1, 1] where the excess is rounding (<= C_ROUND).

    A ratio of two integrals whose exact values obey |q_ab| <= q can come out a few ulp (at most
    the integrals' tolerance) outside; more than C_ROUND means an inaccurate integral.

    Raises
    ------
    ConvergenceError
        If some value exceeds 1 in magnitude by more than C_ROUND.
    """
    c = np.asarray(c, float)
    excess = np.abs(c) - 1
    if np.any(excess > C_ROUND):
        raise ConvergenceError(f"{what}: correlation {float(c.flat[np.argmax(excess)])!r} lies "
                               f"outside [-1, 1] by more than {C_ROUND:g}: the pair integral is "
                               "inaccurate here (please report)")
    return np.clip(c, -1.0, 1.0)


def q_map(q, activation, sigma_w2, sigma_b2, keep=None, **kw):
    """Variance map q^{l+1} = sigma_w^2 E_{z,xi}[g(sqrt(q^l) z, xi)^2] + sigma_b^2.

    Parameters
    ----------
    q : array_like
        Pre-activation variance q^l >= 0; broadcasts with the layer parameters.
    activation, sigma_w2, sigma_b2, keep, **kw
        The layer (see :func:`params`).

    Returns
    -------
    ndarray
        q^{l+1}.

    References
    ----------
    docs/THEORY.md §3; Schoenholz et al. 2017 (the variance and correlation maps); Huang et al.
    2019 (the maps with dropout).
    """
    p = params(activation, sigma_w2, sigma_b2, keep, **kw)
    return per_chunk(_q_map, p, check_q(q))


def _q_map(p, q):
    return p.sigma_w2 * p.noise.second_moment(p.act, q) + p.sigma_b2


def _covariance_map(p, q, c):
    return p.sigma_w2 * p.noise.pair_moments(p.act, q, c, ("K",))[0] + p.sigma_b2


def covariance_map(q, c, activation, sigma_w2, sigma_b2, keep=None, **kw):
    """Covariance map q_ab^{l+1} = sigma_w^2 E[gbar(u1) gbar(u2)] + sigma_b^2.

    Two inputs of equal variance q and correlation c see independent noise (docs/THEORY.md §3).

    Parameters
    ----------
    q, c : array_like
        Variance >= 0 and correlation in [-1, 1] (within ``C_ROUND``) of the two inputs'
        pre-activations.
    activation, sigma_w2, sigma_b2, keep, **kw
        The layer (see :func:`params`).

    Returns
    -------
    ndarray
        q_ab^{l+1}.
    """
    p = params(activation, sigma_w2, sigma_b2, keep, **kw)
    return per_chunk(_covariance_map, p, *check_qc(q, c))


def c_map(q, c, activation, sigma_w2, sigma_b2, keep=None, **kw):
    """Correlation map c^{l+1} = q_ab^{l+1} / q^{l+1} for two inputs of equal variance q.

    The result lies in [-1, 1], so iterating the map layer by layer is safe: the exact ratio
    obeys |q_ab| <= q (Cauchy-Schwarz), and rounding beyond is clipped (``settle_correlation``).
    At q = 0 with sigma_b^2 = 0 (0/0) it is the limit q -> 0, evaluated at q = Q_MIN.

    Parameters and references as :func:`covariance_map`.

    Raises
    ------
    ValueError
        For invalid parameters, or c outside [-1, 1] by more than ``C_ROUND``.
    ConvergenceError
        If the integrals are too inaccurate to give a correlation (a bug: please report).
    """
    p = params(activation, sigma_w2, sigma_b2, keep, **kw)
    q, c = check_qc(q, c)

    def ratio(pc, qc, cc):
        qc = np.where((qc == 0) & (pc.sigma_b2 == 0), Q_MIN, qc)  # 0/0: the q -> 0 limit
        return settle_correlation(_covariance_map(pc, qc, cc) / _q_map(pc, qc))
    return per_chunk(ratio, p, q, c)
