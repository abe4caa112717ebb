"""Fuzz test over the public Python API (issue 12, acceptance).

Every call gives a result, or a ValueError (NoFixedPointError included) naming a parameter, or
a ConvergenceError; never another exception, never a leaked warning, never a NaN outside
``on_missing="nan"`` (and there only where ``has_fixed_point`` is False), and within a time and
memory budget per call: CPU time by an interval timer, memory both by tracemalloc (numpy's
allocations) and by RLIMIT_AS, so a runaway allocation fails as MemoryError instead of taking
the machine. Strategies favour the edges: tiny and huge q, keep near 0 and 1, s near 1 and 2,
sigma_b^2 = 0 and exactly critical weight variances.
"""
import dataclasses
import math
import resource
import signal
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import meanfield as mf
import meanfield.kwinners as kw
from meanfield.gauss import ConvergenceError

CALL_SECONDS = 60  # CPU seconds per call
CALL_BYTES = 1 << 30  # traced numpy memory per call
AS_HEADROOM = 3 << 30  # address space beyond what the process had at the start

fuzz = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# 1 / phi'(0)^2: sigma_w^2 = this * keep is the critical line at sigma_b^2 = 0
UNIT_SLOPE = {"linear": 1.0, "relu": 2.0, "tanh": 1.0, "hard_tanh": 1.0, "erf": 1.0,
              "gelu": 4.0, "silu": 4.0, "sigmoid": 16.0}
NAMES = ("sigma_w2", "sigma_b2", "keep", "drop", "s ", "s (", "backward", "noise", "activation", "c ",
         "sigma_eps2",
         "c (", "q ", "q (", "depth", "method", "loss", "chi", "tol", "on_missing", "f (",
         "density", "fan_in", "weight_var", "n_check", "seed", "exact", "phase_diagram",
         "noise spec", "parameter of", "layer object", "not both", "q_b", "spec")


class CallTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise CallTimeout(f"call exceeded {CALL_SECONDS} s of CPU time")


@pytest.fixture(autouse=True, scope="module")
def address_space_cap():
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as fh:
        size = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    cap = size + AS_HEADROOM
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def call(fn, *args, **kwargs):
    """fn(*args, **kwargs) under the budgets; returns the result or the accepted exception."""
    old = signal.signal(signal.SIGVTALRM, _alarm)
    signal.setitimer(signal.ITIMER_VIRTUAL, CALL_SECONDS)
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = fn(*args, **kwargs)
        used = tracemalloc.get_traced_memory()[1]
    except ValueError as err:  # NoFixedPointError is a ValueError
        msg = str(err)
        assert any(n in msg for n in NAMES), f"{fn.__name__}: error names no parameter: {msg!r}"
        event(f"{fn.__name__}: {type(err).__name__}")
        return err
    except ConvergenceError as err:
        event(f"{fn.__name__}: ConvergenceError")
        return err
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, old)
        tracemalloc.stop()
    assert used < CALL_BYTES, f"{fn.__name__} used {used / 2**20:.0f} MiB"
    event(f"{fn.__name__}: result")
    return out


def arrays_of(obj):
    """The numeric arrays inside a result (dataclasses, tuples, arrays, floats)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            if f.name not in ("noise",):
                yield from arrays_of(getattr(obj, f.name))
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from arrays_of(o)
    elif isinstance(obj, (np.ndarray, float, int, np.floating)) and not isinstance(obj, bool):
        arr = np.asarray(obj)
        if arr.dtype.kind == "f":
            yield arr


def no_nan(obj, where=""):
    for arr in arrays_of(obj):
        assert not np.any(np.isnan(arr)), f"NaN in the result {where}"


# ----------------------------------------------------------------------------- strategies
edge_keep = st.one_of(st.just(1.0), st.floats(1e-3, 1.0), st.floats(1 - 1e-9, 1.0),
                      st.floats(1e-6, 1e-3))
edge_sb = st.one_of(st.just(0.0), st.floats(1e-300, 1e-12), st.floats(1e-3, 2.0))
edge_s = st.one_of(st.floats(0.05, 1.0), st.floats(1 - 1e-6, 1 + 1e-6), st.floats(1.0, 2.0),
                   st.floats(2 - 1e-6, 2 + 1e-6), st.floats(2.0, 4.0))
edge_q = st.one_of(st.just(0.0), st.floats(1e-300, 1e-10), st.floats(1e-4, 10.0),
                   st.floats(10.0, 1e6))
edge_c = st.one_of(st.floats(-1.0, 1.0), st.floats(1 - 1e-9, 1.0), st.floats(-1.0, -1 + 1e-9),
                   st.sampled_from([-1.0, 0.0, 1.0, 1 + 2.2e-16, -1 - 2.2e-16]),
                   # 0 < |c| < 1e-300, subnormals included: 1/c overflows there
                   st.floats(-1e-300, 1e-300), st.sampled_from([2.2e-308, -5e-324, 1e-320]))
bad_number = st.sampled_from([np.nan, np.inf, -np.inf, -1.0, "x", None, [1.0, np.nan]])


@st.composite
def layer(draw, scalar_noise=False):
    """(activation, sigma_w2, sigma_b2, keyword arguments), sometimes with one invalid value."""
    act = draw(st.sampled_from(sorted(UNIT_SLOPE)))
    noise = draw(st.sampled_from(["dropout", "none", "sparseout", "gaussian", "dropconnect"]))
    keep = draw(edge_keep) if noise in ("dropout", "sparseout", "dropconnect") else 1.0
    eps2 = draw(st.one_of(st.just(0.0), st.floats(1e-12, 10.0))) if noise == "gaussian" else 0.0
    kind = draw(st.sampled_from(["tiny", "moderate", "critical", "near_critical"]))
    if kind == "tiny":
        sw = draw(st.floats(1e-17, 1e-6))
    elif kind == "moderate":
        sw = draw(st.floats(0.05, 6.0))
    else:  # chi_1 = 1 at q* = 0: sigma_w^2 E[xi^2] phi'(0)^2 = 1
        sw = UNIT_SLOPE[act] * keep / (1 + eps2)
        if kind == "near_critical":
            sw *= 1 + draw(st.floats(-1e-6, 1e-6))
    sb = 0.0 if kind == "critical" else draw(edge_sb)
    kwargs = {"noise": noise}
    if keep != 1.0 or noise in ("dropout", "dropconnect"):
        if draw(st.booleans()):
            kwargs["keep"] = keep
        else:
            kwargs["drop"] = 1.0 - keep
    if noise == "sparseout":
        kwargs["s"] = draw(edge_s)
        kwargs["backward"] = draw(st.sampled_from(["true", "code"]))
    if noise == "gaussian":
        kwargs["sigma_eps2"] = eps2
    if not scalar_noise and draw(st.integers(0, 3)) == 0:  # a small array
        sw = np.array([sw, draw(st.floats(0.1, 3.0))])
    which = draw(st.integers(0, 9))
    if which == 0:
        sw = draw(bad_number)
    elif which == 1:
        sb = draw(bad_number)
    elif which == 2 and "keep" in kwargs:
        kwargs["keep"] = draw(st.sampled_from([0.0, 1.5, np.nan, "x"]))
    elif which == 3 and "s" in kwargs:
        kwargs["s"] = draw(st.sampled_from([0.0, -1.0, np.inf, "x"]))
    elif which == 3 and "sigma_eps2" in kwargs:
        kwargs["sigma_eps2"] = draw(st.sampled_from([-1.0, np.nan, "x"]))
    return act, sw, sb, kwargs


# ----------------------------------------------------------------------------- the core
@fuzz
@given(lay=layer(), q=edge_q, c=edge_c)
def test_maps(lay, q, c):
    act, sw, sb, kwargs = lay
    out = call(mf.q_map, q, act, sw, sb, **kwargs)
    if not isinstance(out, Exception):
        no_nan(out, "of q_map")
        assert np.all(out >= 0)
    out = call(mf.covariance_map, q, c, act, sw, sb, **kwargs)
    if not isinstance(out, Exception):
        no_nan(out, "of covariance_map")
    out = call(mf.c_map, q, c, act, sw, sb, **kwargs)
    if not isinstance(out, Exception):
        no_nan(out, "of c_map")
        assert np.all(np.abs(out) <= 1)


@fuzz
@given(lay=layer(), fn=st.sampled_from([mf.q_star, mf.chi_1, mf.chi_q, mf.c_star, mf.chi_c]))
def test_fixed_points_and_slopes(lay, fn):
    act, sw, sb, kwargs = lay
    out = call(fn, act, sw, sb, **kwargs)
    if not isinstance(out, Exception):
        no_nan(out, f"of {fn.__name__}")
        assert np.all(out >= (-1 if fn is mf.chi_q else 0))


@fuzz
@given(lay=layer(), on_missing=st.sampled_from(["raise", "nan"]))
def test_analyze(lay, on_missing):
    act, sw, sb, kwargs = lay
    res = call(mf.analyze, act, sw, sb, on_missing=on_missing, **kwargs)
    if isinstance(res, Exception):
        return
    ok = res.has_fixed_point
    for name in ("q_star", "c_star", "chi_1", "chi_c", "chi_q", "xi_q", "xi_c", "xi_1", "c_slope"):
        v = getattr(res, name)
        assert not np.any(np.isnan(v[ok])), f"NaN in {name}"
        # chi_q < 0 is a decreasing variance map (Sparseout, s < 2 on a sigmoid); stable: >= -1
        assert np.all(v[ok] >= (-1 if name == "chi_q" else 0)), name
    assert np.all(res.c_star[ok] <= 1)
    if on_missing == "raise":
        assert np.all(ok)


@settings(fuzz, max_examples=12)
@given(lay=layer(scalar_noise=True), on_missing=st.sampled_from(["raise", "nan"]),
       tol=st.sampled_from([1e-13, 1e-6]))
def test_critical_line(lay, on_missing, tol):
    act, _, sb, kwargs = lay
    out = call(mf.critical_sigma_w2, act, sb, on_missing=on_missing, tol=tol, **kwargs)
    if not isinstance(out, Exception):
        finite = np.isfinite(out)
        assert np.all(out[finite] > 0)
        if on_missing == "raise":
            assert np.all(finite)


@settings(fuzz, max_examples=8)
@given(lay=layer(scalar_noise=True), n_sw=st.integers(0, 3), n_sb=st.integers(0, 2),
       exact=st.booleans())
def test_phase_diagram(lay, n_sw, n_sb, exact):
    act, sw, sb, kwargs = lay
    sw_axis = np.linspace(0.2, 3.0, n_sw) if isinstance(sw, float) else sw
    sb_axis = np.linspace(0.0, 0.3, n_sb) if isinstance(sb, float) else sb
    pd = call(mf.phase_diagram, act, sw_axis, sb_axis, exact=exact, n_check=2, **kwargs)
    if isinstance(pd, Exception):
        return
    ok = pd.result.has_fixed_point
    for name in ("q_star", "c_star", "chi_1", "chi_c", "xi_c", "xi_1"):
        assert not np.any(np.isnan(getattr(pd.result, name)[ok])), name
    assert np.array_equal(np.isnan(pd.critical_sigma_w2), ~pd.has_critical_line)


@settings(fuzz, max_examples=30)
@given(lay=layer(), depth=st.integers(1, 40) | st.integers(1, 40) | st.integers(1, 40)
       | st.sampled_from([0, -1, 2.5, 10**9]),
       method=st.sampled_from(["exact", "gia", "exact", "gia", "other"]),
       loss=st.sampled_from(["sum_squares", "readout"]))
def test_gradient_metrics(lay, depth, method, loss):
    act, sw, sb, kwargs = lay
    g = call(mf.gradient_metrics, act, sw, sb, depth=depth, method=method, loss=loss, **kwargs)
    if not isinstance(g, Exception):
        no_nan(g, "of gradient_metrics")
        assert np.all(g.g_aa >= 0)


@fuzz
@given(chi=st.one_of(st.floats(allow_nan=True), st.lists(st.floats(-1, 3), max_size=3),
                     st.sampled_from([0.0, 1.0, 1 - 1e-16, np.inf, "x", None])))
def test_depth_scales(chi):
    for fn in (mf.depth_scale, mf.gradient_depth_scale):
        out = call(fn, chi)
        if not isinstance(out, Exception):
            no_nan(out, f"of {fn.__name__}")
            assert np.all(np.asarray(out) >= 0)


@fuzz
@given(name=st.sampled_from(["none", "dropout", "sparseout", "laplace", 3]),
       keep=st.one_of(st.none(), edge_keep, bad_number), s=st.one_of(st.none(), edge_s, bad_number),
       spec=st.text(max_size=30))
def test_noise_construction(name, keep, s, spec):
    extra = {} if s is None else {"s": s}
    out = call(mf.make_noise, name, keep=keep, **extra)
    if not isinstance(out, Exception) and out.shape == ():
        again = call(mf.noise_from_spec, out.spec())
        assert again == out
    out = call(mf.noise_from_spec, spec)
    assert isinstance(out, (mf.NoiseLayer, Exception))


# ----------------------------------------------------------------------------- k-winners
frac = st.one_of(st.floats(1e-6, 1 - 1e-6), st.sampled_from([0.5, 1e-12, 1 - 1e-12, 0.0, 1.0, np.nan]))


@fuzz
@given(f=frac, sw=st.one_of(st.floats(1e-6, 10.0), st.just(-1.0)), sb=edge_sb, q=edge_q, c=edge_c,
       critical=st.booleans())
def test_kwinners(f, sw, sb, q, c, critical):
    if critical and 0 < f < 1:
        sw = float(kw.forward_critical_sigma_w2(f))
    for fn, args in ((kw.tau, (f,)), (kw.G, (f,)), (kw.M, (c, 0.3)), (kw.dM_dc, (c, 0.3)),
                     (kw.q_map, (q, f, sw, sb)), (kw.covariance_map, (q, c, f, sw, sb)),
                     (kw.c_map, (q, c, f, sw, sb)), (kw.c_map, (None, c, f, sw, sb)),
                     (kw.q_star, (f, sw, sb)), (kw.c_star, (f, sw, sb)), (kw.chi_1, (f, sw)),
                     (kw.chi_c, (f, sw, sb)), (kw.chi_q, (f, sw)), (kw.xi_1, (f, sw)),
                     (kw.xi_c, (f, sw, sb)), (kw.xi_q, (f, sw)), (kw.critical_sigma_w2, (f,)),
                     (kw.forward_critical_sigma_w2, (f,)),
                     (kw.effective_sigma_w2, (f, 100, sw)), (kw.analyze, (f, sw, sb))):
        out = call(fn, *args)
        if isinstance(out, Exception):
            continue
        if fn is kw.dM_dc:  # infinite at c = 1 for f != 1/2 by design
            assert not np.any(np.isnan(out))
            continue
        no_nan(out, f"of kwinners.{fn.__name__}")
        if fn is kw.c_map:
            assert np.all(np.abs(out) <= 1)


def test_budgets_are_enforced():
    # the guard itself: a runaway allocation fails as MemoryError, not as a full machine
    with pytest.raises(MemoryError):
        call(np.ones, (AS_HEADROOM // 8 + (1 << 28),))
    assert math.isfinite(CALL_SECONDS)
