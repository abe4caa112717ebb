"""Gaussian expectations E[f(m + sd z)], z ~ N(0, 1), whose cost does not grow with the variance.

The integrator is told the *structure* of f (docs/THEORY.md §9):

- ``kinks``: x where f is not analytic (a jump in a derivative, |x|^p); ``bends``: smoothed
  kinks (a kink seen through a narrow Gaussian, as in a conditional expectation);
- ``width`` and ``scale``: inside |x| <= width, f varies on the length ``scale`` (its distance to
  the nearest complex singularity, or where an entire f turns); outside, f is smooth on the
  Gaussian's own scale (a constant, a line, |x|^s): tanh is sign(x) to double precision beyond
  |x| = 20, GELU is relu(x) beyond 10.

Nodes must resolve ``scale`` inside the region and sd outside it, and nothing finer: the count is
bounded whatever the variance. A huge variance makes tanh a step function plus a thin transition,
and the transition is integrated on its own scale. Two rules, both refined until two successive
levels agree to ``rtol`` relative to E|f| + ``floor`` (else :class:`ConvergenceError`):

- the trapezoid rule on z in [-Z, Z] with nested step halving, when no kink is within the window
  and the step the structure needs keeps the node count small (moderate variance: the common case;
  its error for f analytic in a strip of half-width d is ~exp(-2 pi d / h));
- panels otherwise: the window [m - Z sd, m + Z sd] is cut at the kinks and the region's edges,
  and each cell is split into panels no longer than ``P_FEAT * scale`` (inside the region) and
  ``P_GAUSS * sd``. Panels are integrated by Gauss-Legendre of doubling order; a panel that touches
  a kink by tanh-sinh with step halving (its nodes cluster at the kink, so jumps in a derivative
  and integrable power singularities converge exponentially).

The first level of either rule already puts several nodes on every feature of the declared size,
so two levels cannot agree while both miss a feature (the false convergence of a fixed-step rule
whose nodes straddle GELU's curved region at large variance, or Gauss-Hermite's for tanh).

Pair integrals (:func:`expect_pair`) condition on u1: the outer integrand f(u1) G(u1) carries G's
structure, g's mapped by 1/c and smoothed by the inner Gaussian, so c -> +-1 and c -> 0 stay
bounded too; when the inner Gaussian is wide, all inner integrals of a point share one node set
(a matrix-vector product), and each is asked only for the accuracy the outer sum needs.

Memory: f is evaluated in blocks of at most ``BLOCK`` rows x nodes, whatever the number of points.
"""
from __future__ import annotations

import numpy as np

__all__ = ["ConvergenceError", "RTOL", "Z_MAX", "BLOCK", "C_FLAT", "expect", "expect_pair",
           "wide_inner", "conditional_bends"]

TINY = 1e-280  # integrals below this are zero for the convergence test (subnormals have no digits)
Z_MAX = 10.0  # N(0,1) mass beyond 10 sigma is 1.5e-23: below float64 resolution of any moment here
RTOL = 1e-13
BLOCK = 1 << 19  # elements (rows x nodes) of one evaluation of f: 4 MB per float64 array
P_FEAT = 3.0  # longest panel, in units of the structure's scale
P_GAUSS = 10.0  # longest panel, in units of sd (one panel holds a Gaussian flank)
N_TRAP = 640  # the trapezoid rule is used while its first level has at most this many nodes
MAX_PANELS = 4096  # per point: more means an unbounded structured region at a huge variance
# |c| up to this: E[g(c x + s z)] is flat over the outer window (see conditional_bends)
C_FLAT = 1e-150
_SQRT_2PI = np.sqrt(2.0 * np.pi)
_LOG_GAIN = np.log(1e6)  # the trapezoid's first step aims at an error ~1e-6 rtol


class ConvergenceError(RuntimeError):
    """A quadrature rule did not reach the requested tolerance."""


def _pdf(z):
    return np.exp(-0.5 * z * z) / _SQRT_2PI


def _delta(diff, ab, floor, weight, extra=0.0):
    """Largest relative change: |diff| / (E|f| + floor) per point, or, with ``weight`` (the outer
    rule's weight of each point along the last axis), the weighted sums pooled along that axis.

    Pooling asks each inner integral of a pair for the accuracy the outer sum needs: far in the
    outer tail (weight ~e^-200) a relative test would refine for nothing, and rounding or the
    window's edge would stop it from converging. ``extra`` adds to the pooled scale (the part of
    the outer sum computed elsewhere). Values below TINY count as zero.
    """
    diff = np.abs(diff)
    scale = ab + floor
    if weight is not None:
        diff, scale = (weight * diff).sum(-1), (weight * scale).sum(-1) + extra
    return float(np.max(diff / np.maximum(scale, TINY), initial=0.0))


def _converged(delta, rtol, prev_delta=None, first=False):
    """Stop when two levels agree to rtol, or when the rule is visibly in its exponential regime.

    For every rule here a refinement squares the error (Gauss-Legendre doubling its order,
    tanh-sinh or the trapezoid halving its step: error ~ A rho^-n with A >~ 1), so the difference
    delta between levels estimates the error of the coarser one and the finer level's error is
    <~ delta^2. That suffices once the rule is seen converging geometrically: delta <=
    prev_delta^1.5 (then delta^2 <= rtol / 100), or, for a first comparison of rules whose first
    level already resolves every feature (``first``: panels sized from the structure), delta <=
    1e-4 (then delta^2 <= rtol).
    """
    if delta <= rtol:
        return True
    if prev_delta is None:
        return bool(first and delta <= 1e-4 and delta * delta <= rtol)
    return bool(delta <= prev_delta**1.5 and delta * delta <= rtol * 1e-2)


def _accumulate(f, blocks):
    """(sum f(x) w, sum |f(x) w|) over the last axis, summed over the (x, w) blocks.

    The outer integrand of a pair (``pair_integrand`` set) is called as f(x, w) (it hands the
    weights to its inner integrals) and returns (f G, |f| E|g|): the second, not |f G|, is the
    scale its convergence is judged against, since the inner integrals are accurate relative to
    E|g|, not to a G that cancels.
    """
    tot = ab = 0.0
    for x, w in blocks:
        if getattr(f, "pair_integrand", False):
            v, a = f(x, w)
            a = a * np.abs(w)
        else:
            v = f(x)
            a = None
        v = v * w
        tot = tot + v.sum(-1)
        ab = ab + (np.abs(v) if a is None else a).sum(-1)
    return tot, ab


# ---------------------------------------------------------------------------- trapezoid in z
def _trapezoid(f, mean, sd, h, rtol, floor, weight, cost, extra=0.0, max_level=8):
    """Trapezoid rule on z in [-Z, Z], first step h, nested halving.

    The sums over every 2nd and 4th node (steps 2h, 4h) come free and give differences
    d1 = |S_4h - S_2h|, d2 = |S_2h - S_h|; in the exponential regime the error of S_h is
    ~d2^3 / d1^2, so the first level is often accepted at once. Else the step is halved until two
    levels agree (see _converged).
    """
    rows = mean.size
    n = int(4 * np.ceil(Z_MAX / (4 * h)))
    k = np.arange(-n, n + 1)
    z = k * h
    w = np.stack([np.full(z.shape, h), 2 * h * (k % 2 == 0), 4 * h * (k % 4 == 0)]) * _pdf(z)
    m, s = mean[..., None], sd[..., None]
    step = max(1, BLOCK // max(1, rows * cost))
    # one pass gives the sums at steps h, 2h, 4h: weights of every node, every 2nd, every 4th
    blocks = ((m + s * z[j:j + step], w[:, j:j + step]) for j in range(0, z.size, step))
    if getattr(f, "pair_integrand", False):
        def three(x, w3):
            v, a = f(x, w3[0])
            return v[..., None, :], a[..., None, :]
        three.pair_integrand = True
    else:
        def three(x):
            return f(x)[..., None, :]
    tot, ab = _accumulate(three, blocks)
    est, s2, s4 = tot[..., 0], tot[..., 1], tot[..., 2]
    ab = ab[..., 0]
    d1 = _delta(s2 - s4, ab, floor, weight, extra)
    d2 = _delta(est - s2, ab, floor, weight, extra)
    if d2 <= rtol or (d2 < d1 and d2 ** 3 <= rtol * d1 ** 2):
        return est, ab
    total, absum = est / h, ab / h
    delta, zmax = d2, z[-1]
    for _ in range(max_level):
        h /= 2
        z_new = np.arange(-zmax + h, zmax, 2 * h)  # the midpoints a halving adds
        t, a = _accumulate(f, ((m + s * z_new[j:j + step], _pdf(z_new[j:j + step]))
                               for j in range(0, z_new.size, step)))
        total, absum = total + t, absum + a
        new = total * h
        prev, delta = delta, _delta(new - est, absum * h, floor, weight, extra)
        if _converged(delta, rtol, prev):
            return new, absum * h
        est = new
    raise ConvergenceError(f"trapezoid rule did not converge to rtol={rtol} with step {h}")


# ---------------------------------------------------------------------------- panels
_GL_CACHE: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _gauss_legendre(n):
    if n not in _GL_CACHE:
        _GL_CACHE[n] = np.polynomial.legendre.leggauss(n)
    return _GL_CACHE[n]


def _panels(lo, hi, gscale, cuts, is_kink, reg_lo, reg_hi, reg_scale):
    """Cut [lo, hi] (shape S) at ``cuts`` into panels no longer than P_GAUSS * gscale, nor than
    P_FEAT * scale inside a region; returns (GL panels, TS panels), each (a, b) of shape S + (n,)
    padded with empty panels (a = b). A TS panel touches a kink.
    """
    inside = (cuts > lo[..., None]) & (cuts < hi[..., None])
    pts = np.concatenate([lo[..., None], np.clip(cuts, lo[..., None], hi[..., None]), hi[..., None]], -1)
    kink = np.concatenate([np.zeros(lo.shape + (1,), bool), is_kink & inside,
                           np.zeros(lo.shape + (1,), bool)], -1)
    order = np.argsort(pts, axis=-1, kind="stable")
    pts = np.take_along_axis(pts, order, -1)
    kink = np.take_along_axis(kink, order, -1)
    a, b = pts[..., :-1], pts[..., 1:]
    mid = 0.5 * (a + b)
    longest = P_GAUSS * gscale[..., None] * np.ones_like(mid)
    for j in range(reg_scale.shape[-1]):  # cells lie wholly inside or outside each region
        within = (reg_lo[..., j:j + 1] <= mid) & (mid <= reg_hi[..., j:j + 1])
        longest = np.where(within, np.minimum(longest, P_FEAT * reg_scale[..., j:j + 1]), longest)
    count = np.where(b > a, np.maximum(1, np.ceil((b - a) / longest)), 0).astype(int)
    total = int(count.sum(-1).max(initial=0))
    if total > MAX_PANELS:
        raise ConvergenceError(
            f"the Gaussian window needs {total} panels of the integrand's scale: its structured "
            "region is too wide for this variance (an Activation built without width= is "
            "assumed to have structure everywhere; declare width and scale)")
    kmax = int(count.max(initial=1))
    j = np.arange(kmax)
    valid = j < count[..., None]  # S + (cells, kmax)
    frac = (b - a)[..., None] / np.maximum(count, 1)[..., None]
    pa = a[..., None] + j * frac
    pb = np.where(j == count[..., None] - 1, b[..., None], a[..., None] + (j + 1) * frac)
    ts = valid & (((j == 0) & kink[..., :-1, None]) | ((j == count[..., None] - 1) & kink[..., 1:, None]))
    shape = lo.shape + (-1,)
    pa, pb, valid, ts = (x.reshape(shape) for x in (pa, pb, valid, ts))

    def pick(mask):
        n = int(mask.sum(-1).max(initial=0))
        idx = np.argsort(~mask, axis=-1, kind="stable")[..., :n]
        keep = np.take_along_axis(mask, idx, -1)
        ca = np.take_along_axis(pa, idx, -1)
        return ca, np.where(keep, np.take_along_axis(pb, idx, -1), ca)
    return pick(valid & ~ts), pick(ts)


def _reference_nodes(a, b, off, wt, from_both_ends):
    """Nodes and quadrature weights (S + (panels, n)) of a rule given on [-1, 1] (Gauss-Legendre:
    ``off`` are nodes) or by offsets from the ends (tanh-sinh: nodes at a + (b-a) off and
    b - (b-a) off, so a kink is never hit nor lost to rounding)."""
    a, b = a[..., None], b[..., None]
    if from_both_ends:
        return np.concatenate([a + (b - a) * off, b - (b - a) * off], -1), \
            0.5 * (b - a) * np.concatenate([wt, wt])
    return 0.5 * (a + b) + 0.5 * (b - a) * off, 0.5 * (b - a) * wt


def _ts_rule(t):
    s = 0.5 * np.pi * np.sinh(t)
    off = 0.5 * np.exp(-s) / np.cosh(s)  # (1 - tanh s)/2 without cancellation
    with np.errstate(over="ignore"):  # cosh(s)^2 = inf far out: the weight is 0 there
        wt = 0.5 * np.pi * np.cosh(t) / np.cosh(s) ** 2 * np.where(t == 0, 0.5, 1.0)
    return off, wt


def _panel_levels(level_sum, gl_panels, ts_panels, rtol, floor, weight, singular):
    """Gauss-Legendre of doubling order on the smooth panels, tanh-sinh with step halving on the
    kinked ones, until both families have converged against the whole integral.

    ``level_sum(panels, off, wt, from_both_ends)`` returns (sum, sum of |.|) of the integrand
    times the quadrature weights of those reference nodes on those panels.
    """
    have_gl, have_ts = gl_panels[0].shape[-1] > 0, ts_panels[0].shape[-1] > 0
    t_max = 6.2 if singular else 4.0
    n, h = 16, 0.5
    g_est, g_ab = level_sum(gl_panels, *_gauss_legendre(n), False) if have_gl else (0.0, 0.0)
    t_tot, t_ab = level_sum(ts_panels, *_ts_rule(np.arange(0.0, t_max + h / 2, h)), True) \
        if have_ts else (0.0, 0.0)
    t_est, t_abs = h * t_tot, h * t_ab
    g_done, t_done = not have_gl, not have_ts
    g_delta = t_delta = None
    for _ in range(5):
        if g_done and t_done:
            return g_est + t_est, g_ab + t_abs
        scale = g_ab + t_abs  # both families' errors count against the whole integral
        if not g_done:
            n *= 2
            new, g_ab = level_sum(gl_panels, *_gauss_legendre(n), False)
            prev, g_delta = g_delta, _delta(new - g_est, scale, floor, weight)
            g_done, g_est = _converged(g_delta, rtol, prev, first=True), new
        if not t_done:
            h /= 2  # a halving adds the odd multiples of the new step: S = h * (all values)
            t_new, a_new = level_sum(ts_panels, *_ts_rule(np.arange(h, t_max, 2 * h)), True)
            t_tot, t_ab = t_tot + t_new, t_ab + a_new
            new, t_abs = h * t_tot, h * t_ab
            prev, t_delta = t_delta, _delta(new - t_est, scale, floor, weight)
            # no first-comparison shortcut: a bend at a tanh-sinh end (a smoothed kink) keeps the
            # coarse levels pre-asymptotic
            t_done, t_est = _converged(t_delta, rtol, prev), new
    if g_done and t_done:
        return g_est + t_est, g_ab + t_abs
    raise ConvergenceError(f"panel quadrature did not converge to rtol={rtol} (Gauss-Legendre order {n}, "
                           f"tanh-sinh step {h})")


def _panel_rule(f, mean, sd, panels, rtol, floor, weight, singular, cost):
    """E[f(mean + sd z)] on per-point panels (S + (n,) each)."""
    m, inv = mean[..., None, None], 1.0 / sd[..., None, None]
    rows = mean.size

    def level_sum(pan, off, wt, both):
        a, b = pan
        per = max(1, BLOCK // max(1, rows * cost * off.size * (2 if both else 1)))

        def blocks():
            for p in range(0, a.shape[-1], per):
                x, w = _reference_nodes(a[..., p:p + per], b[..., p:p + per], off, wt, both)
                w = w * _pdf((x - m) * inv) * inv
                flat = x.shape[:-2] + (-1,)
                yield x.reshape(flat), w.reshape(flat)
        return _accumulate(f, blocks())
    return _panel_levels(level_sum, *panels, rtol, floor, weight, singular)


# ---------------------------------------------------------------------------- driver
def _integrate(f, mean, sd, cuts, is_kink, reg_lo, reg_hi, reg_scale, rtol, floor, weight, singular,
               cost):
    """E[f(mean + sd z)] for sd > 0 with the structure given per point (see :func:`expect`)."""
    lo, hi = mean - Z_MAX * sd, mean + Z_MAX * sd
    kink_in = is_kink & (cuts > lo[..., None]) & (cuts < hi[..., None])
    seen = (reg_lo < hi[..., None]) & (reg_hi > lo[..., None])  # regions the window meets
    need = np.where(seen, reg_scale * (2 * np.pi / (_LOG_GAIN + np.log(1 / rtol))), np.inf)
    need = need.min(-1, initial=np.inf) / sd  # z-step resolving every region in view
    h = min(0.5, float(np.min(need, initial=np.inf)))
    if not np.any(kink_in) and 2 * Z_MAX / h <= N_TRAP:
        return _trapezoid(f, mean, sd, h, rtol, floor, weight, cost)
    panels = _panels(lo, hi, sd, cuts, is_kink, reg_lo, reg_hi, reg_scale)
    return _panel_rule(f, mean, sd, panels, rtol, floor, weight, singular, cost)


def _expect(f, mean, var, cuts, is_kink, reg_lo, reg_hi, reg_scale, rtol, floor=0.0, singular=False,
            weight=None, cost=1):
    """(E[f(mean + sqrt(var) z)], E|f|) with per-point structure; var = 0 gives f(mean) exactly."""
    sd = np.sqrt(var)
    zero = sd == 0
    if np.any(zero):  # a degenerate Gaussian is a point mass; keep the rules' sd > 0
        x = mean[..., None]
        if getattr(f, "pair_integrand", False):
            point, point_ab = (v[..., 0] for v in f(x, np.ones(x.shape)))
        else:
            point = f(x)[..., 0]
            point_ab = np.abs(point)
        if np.all(zero):
            return point, point_ab
        sd = np.where(zero, 1.0, sd)
    out, ab = _integrate(f, mean, sd, cuts, is_kink, reg_lo, reg_hi, reg_scale, rtol, floor, weight,
                         singular, cost)
    if np.any(zero):
        out, ab = np.where(zero, point, out), np.where(zero, point_ab, ab)
    return out, ab


def _bend_structure(pos, w):
    """Cuts, kink flags and regions of smoothed kinks: f bends within Z w of ``pos`` on the length
    w (w = 0: a true kink). The bend is a tanh-sinh end; the region around it has its scale."""
    pos, w = np.broadcast_arrays(pos, w)
    half = Z_MAX * w
    cuts = np.concatenate([pos, pos - half, pos + half], -1)
    flags = np.concatenate([np.ones(pos.shape, bool), np.zeros(pos.shape, bool),
                            np.zeros(pos.shape, bool)], -1)
    region = np.stack([pos - half, pos + half, np.where(w > 0, w, np.inf)], -1)
    return cuts, flags, region


def conditional_bends(kinks, c, s):
    """Bends of G(x) = E[g(c x + s z)], z ~ N(0, 1), for g with kinks at ``kinks``: at kink/c, of
    width s/|c| (a kink seen through the Gaussian, mapped by 1/c).

    Where |c| <= C_FLAT there are none (position -inf, width 0, clipped away as for c = 0):
    over the outer window |x| <= Z_MAX sqrt(q) the inner mean c x moves by at most
    Z_MAX |c| sqrt(q) <= 1e-149 s (s = sqrt(q (1 - c^2)) = sqrt(q) to rounding), so G is
    constant there far below rounding; kink/c and s/|c| would overflow (c = 2e-308, or a
    subnormal c), and at |c| <= 1e-150 they stay below 1e305 for any q < 1e308.

    Parameters
    ----------
    kinks : array_like, shape (nk,)
        Kinks of g (x units).
    c, s : array_like, shape S
        Correlation and the inner Gaussian's standard deviation s >= 0.

    Returns
    -------
    (positions, widths) : ndarrays of shape S + (nk,)
        As :func:`expect`'s ``bends``.

    References
    ----------
    docs/THEORY.md §9 (numerics).
    """
    c, s = np.broadcast_arrays(np.asarray(c, float), np.asarray(s, float))
    k = np.asarray(kinks, float).reshape(np.size(kinks))
    mapped = np.abs(c) > C_FLAT
    inv = 1.0 / np.where(mapped, c, 1.0)
    pos = np.where(mapped[..., None], k * inv[..., None], -np.inf)
    width = np.where(mapped, s * np.abs(inv), 0.0)[..., None]
    return pos, np.broadcast_to(width, pos.shape)


def _own_structure(shape, kinks, scale, width, bends=None):
    """Cuts, kink flags and regions of an integrand's own structure, broadcast to shape + (n,)."""
    kinks = np.asarray(kinks, float).reshape(np.shape(kinks) or (0,))
    kinks = np.broadcast_to(kinks, shape + kinks.shape[-1:])
    has_region = np.isfinite(scale)
    edges = [-width, width] if has_region and np.isfinite(width) else []
    cuts = [kinks, np.broadcast_to(np.asarray(edges, float), shape + (len(edges),))]
    flags = [np.ones(kinks.shape, bool), np.zeros(shape + (len(edges),), bool)]
    regions = [np.broadcast_to(np.asarray([[-width, width, scale]] if has_region else np.zeros((0, 3))),
                               shape + ((1 if has_region else 0), 3))]
    if bends is not None:
        pos, w = (np.broadcast_to(np.asarray(b, float), shape + np.shape(b)[-1:]) for b in bends)
        bc, bf, br = _bend_structure(pos, w)
        cuts.append(bc)
        flags.append(bf)
        regions.append(br)
    return np.concatenate(cuts, -1), np.concatenate(flags, -1), np.concatenate(regions, -2)


def expect(f, var, mean=0.0, *, kinks=(), scale=np.inf, width=np.inf, bends=None, rtol=RTOL,
           floor=0.0, singular=False):
    """E[f(mean + sqrt(var) z)], z ~ N(0, 1), elementwise over broadcast(mean, var).

    Parameters
    ----------
    f : callable
        Maps x of shape S + (n,) to values of shape (k,) + S + (n,) or S + (n,) (k stacked
        integrands); S is the broadcast shape of mean and var, and f may close over arrays of that
        shape.
    var, mean : array_like
        Variance >= 0 and mean of the Gaussian (x units); var = 0 gives f(mean) exactly.
    kinks : array_like, shape (nk,) or S + (nk,)
        x where f is not analytic (per point if S-shaped).
    scale : float
        Length (x units) on which f varies inside |x| <= width: the half-width of the strip around
        the real axis where f is analytic and of moderate size. inf (the default): f is smooth on
        the Gaussian's scale everywhere (a polynomial, |x|^s). This is the caller's declaration
        and nothing checks it: an integrand built from an activation must pass its structure
        (``**activation.structure``), or nodes spaced by the Gaussian's scale may straddle its
        features at large variance. scale = 1 with width = inf is safe for any f whose features
        are not finer than 1, at a cost growing with sd (refused beyond ~4000 panels).
    width : float
        Half-width of the region holding f's structure; outside it f is smooth on the Gaussian's
        scale. inf: structure everywhere.
    bends : (array_like, array_like), optional
        Positions and widths w (each shape (nb,) or S + (nb,)) of smoothed kinks: f is analytic
        but turns on the length w within ~10 w of the position (a kink convolved with a Gaussian
        of standard deviation w, as in a conditional expectation); w = 0 is a kink.
    rtol : float
        Relative tolerance, judged against E|f| + ``floor`` (an absolute scale for integrals that
        cancel).
    singular : bool
        f has integrable power singularities |x - kink|^p, p > -1, at kinks: tanh-sinh nodes then
        reach to ~1e-300 of the kink, since the mass the rule cannot see within eps of it is
        ~eps^(1+p).

    Returns
    -------
    ndarray of shape (k,) + S or S

    Raises
    ------
    ConvergenceError
        If the tolerance is not reached (never a poor number instead).

    References
    ----------
    docs/THEORY.md §9 (numerics).
    """
    mean, var = np.broadcast_arrays(np.asarray(mean, float), np.asarray(var, float))
    cuts, is_kink, reg = _own_structure(mean.shape, kinks, scale, width, bends)
    return _expect(f, mean, var, cuts, is_kink, reg[..., 0], reg[..., 1], reg[..., 2], rtol, floor,
                   singular)[0]


def _shared_inner(g, mu, s, cuts, is_kink, reg, reach, rtol, floor, weight, singular):
    """G_i = E[g(mu_i + s z)] for all outer nodes i of a point at once (s per point, S + (1,)).

    The inner Gaussians of one point differ only in their mean, so one node set serves all of
    them: panels over [-(reach + 2 Z s), reach + 2 Z s] cut at g's structure, evaluated once,
    and G = (g v) @ density matrix. Rows whose window misses g's structure (|mu| > reach + Z s:
    g is smooth on the Gaussian's scale there) take the trapezoid rule at step 1/2.
    """
    near = np.abs(mu) < reach + Z_MAX * s
    sd = np.broadcast_to(s, mu.shape)
    out = out_ab = 0.0
    if np.any(near):
        out, out_ab = _shared_panels(g, mu, s, near, cuts, is_kink, reg, reach, rtol, floor, weight,
                                     singular)
    if np.all(near):
        return out, out_ab
    # g decays to its asymptote out there (tanh's e^-2|x|): relative accuracy of those rows is
    # neither possible (the window's edge) nor needed; they count against the whole outer sum
    w = np.ones(mu.shape) if weight is None else weight
    far, far_ab = _trapezoid(g, mu, sd, 0.5, rtol, floor, w * ~near, 1, extra=(w * near * out_ab).sum(-1))
    return np.where(near, out, far), np.where(near, out_ab, far_ab)


def _shared_panels(g, mu, s, near, cuts, is_kink, reg, reach, rtol, floor, weight, singular):
    """The near rows of :func:`_shared_inner` (others are returned as garbage)."""
    s1 = s[..., 0]
    hi = reach + 2 * Z_MAX * s1
    panels = _panels(-hi, hi, s1, cuts, is_kink, reg[..., 0], reg[..., 1], reg[..., 2])
    inv = 1.0 / s
    rows = mu.size

    def level_sum(pan, off, wt, both):
        y, v = _reference_nodes(*pan, off, wt, both)
        y, v = y.reshape(y.shape[:-2] + (-1,)), v.reshape(v.shape[:-2] + (-1,))
        gv = g(y) * v  # (k,) + S + (n_y,)
        tot = ab = 0.0
        per = max(1, BLOCK // max(1, rows))
        for j in range(0, y.shape[-1], per):  # einsum, not a (threaded) BLAS product: see kernels
            dens = _pdf((y[..., None, j:j + per] - mu[..., None]) * inv[..., None]) * inv[..., None]
            tot = tot + np.einsum("...j,...ij->...i", gv[..., j:j + per], dens)
            ab = ab + np.einsum("...j,...ij->...i", np.abs(gv[..., j:j + per]), dens)
        return tot, ab
    near_w = near if weight is None else weight * near
    return _panel_levels(level_sum, *panels, rtol, floor, near_w, singular)


def _extent(kinks, scale, width):
    """Half-width of the x range holding an integrand's structure: its kinks, and its region
    where ``scale`` is finite (0: none; inf: everywhere)."""
    return max(np.max(np.abs(kinks), initial=0.0), width if np.isfinite(scale) else 0.0)


def _wide(s, extent):
    """One node set serves all inner integrals of a point when the inner Gaussian is wide enough
    that the set stays small (s >= extent / 40: at most ~8 Gaussian-scale panels besides g's
    own); narrower inner windows are cheap one by one."""
    return s >= extent / 40


def wide_inner(q, c, *, kinks=(), scale=np.inf, width=np.inf):
    """Boolean per point: :func:`expect_pair` would integrate the inner Gaussians of (q, c) on one
    shared node set. A call shares them only if all its points do, so a caller with many points
    keeps the wide ones together (:func:`meanfield.kernels.pair`)."""
    q, c = np.broadcast_arrays(np.asarray(q, float), np.asarray(c, float))
    return _wide(np.sqrt(np.maximum(q * (1.0 - c) * (1.0 + c), 0.0)), _extent(kinks, scale, width))


def expect_pair(f, g, q, c, *, kinks=(), scale=np.inf, width=np.inf, rtol=RTOL, singular=False):
    """E[f(u1) g(u2)] for (u1, u2) centred Gaussian, Var = q, correlation c (stacked outputs).

    Conditioning on u1 = x1 gives u2 = c x1 + sqrt(q (1 - c^2)) z2: an inner 1-D expectation
    G(x1) = E[g(c x1 + s z2)] of g, then an outer one of f G. f and g share the structure
    ``kinks``, ``scale``, ``width`` (see :func:`expect`). G carries g's structure mapped by 1/c and
    smoothed by the inner Gaussian: its region |x1| <= (width + Z s)/|c| on the scale
    max(scale, 2 s)/|c|, and bends of width s/|c| at kink/c (:func:`conditional_bends`; none
    where |c| <= C_FLAT, where G is flat). The outer rule cuts there, so
    c -> +-1 (s -> 0), c -> 0 and any q cost a bounded number of nodes. Accuracy is relative to
    E[|f(u1)| E(|g(u2)| | u1)]: that is the integral itself for integrands of one sign (so
    E[phi'(u1) phi'(u2)] ~ 1/q keeps rtol relative accuracy at any q), and the scale an integral
    that cancels, inside or outside, can be computed to.

    Parameters
    ----------
    f, g : callable
        As in :func:`expect`, with the same number k of stacked outputs (or none).
    q, c : array_like
        Variance >= 0 and correlation in [-1, 1], broadcast together (shape S).

    Returns
    -------
    ndarray of shape (k,) + S or S
    """
    q, c = np.broadcast_arrays(np.asarray(q, float), np.asarray(c, float))
    shape = q.shape
    s_in = np.sqrt(np.maximum(q * (1.0 - c) * (1.0 + c), 0.0))  # 1 - c, 1 + c exact near +-1
    # |c| <= C_FLAT (c = 0 included): G is constant; its structure goes to -inf and is clipped away
    nz = np.abs(c) > C_FLAT
    k = np.asarray(kinks, float).reshape(np.size(kinks))
    parts = [_own_structure(shape, kinks, scale, width, conditional_bends(k, c, s_in))]
    if np.isfinite(scale):  # g's region, mapped and smoothed
        inv = np.abs(1.0 / np.where(nz, c, 1.0))
        reach = np.where(nz, (width + Z_MAX * s_in) * inv, np.inf)
        # a Gaussian convolution grows like e^(c^2 y^2 / 2 s^2) off the axis: its scale is 2 s/|c|
        # (calibrated like GELU's Phi: scale 2 for s = 1)
        g_scale = np.where(nz, np.maximum(scale, 2 * s_in) * inv, np.inf)
        parts.append((np.stack([-reach, reach], -1), np.zeros(shape + (2,), bool),
                      np.stack([-reach, reach, g_scale], -1)[..., None, :]))
    cuts, flags, reg = (np.concatenate(x, -1 if i < 2 else -2) for i, x in enumerate(zip(*parts)))
    inner_var = (s_in * s_in)[..., None]
    cc = c[..., None]

    extent = _extent(k, scale, width)
    shared = extent > 0 and bool(np.all(_wide(s_in, extent)))
    if shared:
        icuts, ikink, ireg = _own_structure(shape, kinks, scale, width)
    # An absolute floor for the inner integrals, 1e-16 of g's size where its structure is: an
    # inner window out in g's tails (tanh's e^-2|x| deviation) can neither be integrated to a
    # relative accuracy (the window's edge cuts the decay) nor matter, and a block of outer
    # nodes may hold only such windows.
    reach = extent if 0 < extent < np.inf else 1.0
    probe = np.linspace(-reach, reach, 129)
    inner_floor = 1e-16 * np.abs(g(np.broadcast_to(probe, shape + probe.shape))).max(-1)[..., None]

    def outer(x1, w1):
        fx = f(x1)
        mean = cc * x1
        wt = np.abs(fx) * w1
        if shared:
            G, Gab = _shared_inner(g, mean, s_in[..., None], icuts, ikink, ireg, extent, rtol,
                                   inner_floor, wt, singular)
        else:
            icuts_, ikink_, ireg_ = _own_structure(mean.shape, kinks, scale, width)
            G, Gab = _expect(g, mean, np.broadcast_to(inner_var, mean.shape), icuts_, ikink_,
                             ireg_[..., 0], ireg_[..., 1], ireg_[..., 2], rtol, inner_floor,
                             singular=singular, weight=wt)
        return fx * G, np.abs(fx) * Gab
    outer.pair_integrand = True

    return _expect(outer, np.zeros(shape), q, cuts, flags, reg[..., 0], reg[..., 1], reg[..., 2], rtol,
                   singular=singular, cost=256)[0]
