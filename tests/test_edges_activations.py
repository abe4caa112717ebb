"""Every registered activation's phi, phi', phi'' on Python and numpy scalars, 0-d and n-d arrays:
a float result of the input's shape, equal to mpmath's derivatives of an mpmath phi."""
import mpmath
import numpy as np
import pytest

import meanfield as mf

mpmath.mp.dps = 30
A = mpmath.sqrt(mpmath.pi) / 2  # the papers' erf scale

# phi in mpmath, written from the definitions (not from the code under test)
MP_PHI = {
    "linear": lambda x: x,
    "relu": lambda x: max(x, 0),
    "tanh": mpmath.tanh,
    "hard_tanh": lambda x: min(max(x, -1), 1),
    "erf": lambda x: mpmath.erf(A * x),
    "sigmoid": lambda x: 1 / (1 + mpmath.exp(-x)),
    "gelu": lambda x: x * mpmath.ncdf(x),
    "silu": lambda x: x / (1 + mpmath.exp(-x)),
}
POINTS = (-2.5, -0.3, 0.7, 3)  # no kink of relu or hard tanh; the last one a Python int


def test_every_registered_activation_is_covered():
    assert set(MP_PHI) == set(mf.ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(MP_PHI))
def test_scalars_and_arrays(name):
    act = mf.get_activation(name)
    for order, fn in enumerate((act.phi, act.dphi, act.d2phi)):
        exact = [float(mpmath.diff(MP_PHI[name], mpmath.mpf(x), order)) for x in POINTS]
        for x, e in zip(POINTS, exact):
            for arg in (x, float(x), np.float64(x), np.array(float(x))):
                out = np.asarray(fn(arg))
                assert out.shape == () and out.dtype == np.float64, (order, repr(arg), out)
                assert float(out) == pytest.approx(e, rel=1e-14, abs=1e-15), (order, repr(arg))
        for arr in (np.array(POINTS, float), np.array(POINTS, float).reshape(2, 2)):
            out = np.asarray(fn(arr))
            assert out.shape == arr.shape and out.dtype == np.float64, order
            np.testing.assert_allclose(out.ravel(), exact, rtol=1e-14, atol=1e-15)
