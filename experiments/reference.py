"""Loader for the published gradient measurements of Huang et al. 2019 (authors' raw CSV files).

The directory is found, in order, from the environment variable ``MEANFIELD_HUANG2019_DIR`` (the
``huang2019`` folder itself), ``MEANFIELD_SHARED`` (a ``shared`` folder containing
``reference/huang2019``), or ``../shared/reference/huang2019`` next to the repository.

Layout (see that folder's README; confirmed by comparing with the closed forms and simulations):
per-layer files have one value per layer, row 0 = layer 1 (input side), last row = layer 200
(output side). Metric names follow :mod:`meanfield.simulation`: ``g_aa``, ``g_ab`` and ``g_abs``
(the absolute pair metric g~_ab; the check ``g_abs^L = 4 E|u1 u2|^2`` of the linear network at the
output layer identifies ``linear_n5_r*ab_s.csv`` as g~_ab). ``keep`` is the keep probability rho;
the files' tag ``rR`` means rho = R/10.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["huang2019_dir", "load_fig2", "load_fig3", "load_univer", "available_univer"]

_ENV_DIR = "MEANFIELD_HUANG2019_DIR"
_ENV_SHARED = "MEANFIELD_SHARED"
_ACT = {"linear": "linear", "relu": "relu", "tanh": "tanh", "hard_tanh": "htanh", "htanh": "htanh"}


def huang2019_dir() -> Path:
    """The folder with the authors' CSVs; FileNotFoundError saying where it looked otherwise."""
    tried = []
    if os.environ.get(_ENV_DIR):
        tried.append(Path(os.environ[_ENV_DIR]))
    if os.environ.get(_ENV_SHARED):
        tried.append(Path(os.environ[_ENV_SHARED]) / "reference" / "huang2019")
    tried.append(Path(__file__).resolve().parent.parent.parent / "shared" / "reference" / "huang2019")
    for p in tried:
        if (p / "gradient_li").is_dir():
            return p
    raise FileNotFoundError(
        "Huang et al. 2019 reference data not found; looked in " + ", ".join(str(p) for p in tried)
        + f". Set {_ENV_DIR} to the huang2019 folder (it holds gradient_li/, gradient_lis/, univer/).")


def _tag(keep):
    r = round(float(keep) * 10)
    if not (1 <= r <= 10 and abs(float(keep) * 10 - r) < 1e-9):
        raise ValueError(f"keep must be one of 0.1, 0.2, ..., 1.0 (files are tagged rho*10), got {keep!r}")
    return r


def _load(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"reference file missing: {path}")
    return np.loadtxt(path, dtype=float, ndmin=1)


def load_fig2(keep, metric="g_aa", width=1000):
    """Fig. 2 (linear, sigma_w^2 = 0.5, sigma_b^2 = 0.1): mean metric per layer, shape (200,).

    width 1000: ``linear_r*{aa,ab}_g.csv`` (keep 0.5 to 1.0); width 500: ``linear_n5_r*`` files,
    which also hold ``g_abs``.
    """
    names = {1000: {"g_aa": "aa_g", "g_ab": "ab_g"}, 500: {"g_aa": "aa_g", "g_ab": "ab_g", "g_abs": "ab_s"}}
    if width not in names:
        raise ValueError(f"width must be 500 or 1000, got {width!r}")
    if metric not in names[width]:
        raise ValueError(f"metric must be one of {sorted(names[width])} for width {width}, got {metric!r}")
    pre = "linear_" if width == 1000 else "linear_n5_"
    return _load(huang2019_dir() / "gradient_li" / f"{pre}r{_tag(keep)}{names[width][metric]}.csv")


def load_fig3(activation, keep, metric="g_aa"):
    """Fig. 3 (tanh 1.4, relu 1.0, hard-tanh 1.4, linear 0.5; sigma_b^2 = 0.1): shape (200,)."""
    if activation not in _ACT:
        raise ValueError(f"activation must be one of {sorted(_ACT)}, got {activation!r}")
    suffix = {"g_aa": "aa_s", "g_ab": "ab_s", "g_abs": "ab_sab"}
    if metric not in suffix:
        raise ValueError(f"metric must be one of {sorted(suffix)}, got {metric!r}")
    return _load(huang2019_dir() / "gradient_lis" / f"{_ACT[activation]}_r{_tag(keep)}{suffix[metric]}.csv")


def load_univer(activation, width, keep, metric="g_aa", networks=100):
    """Figs. 4-5 per-network values, reshaped to (networks, points per network).

    Files hold ``networks`` consecutive blocks (one per random network) of 20 or 21 values; the
    order of the points within a block is what :func:`available_univer` users must check.
    """
    if activation not in _ACT:
        raise ValueError(f"activation must be one of {sorted(_ACT)}, got {activation!r}")
    suffix = {"g_aa": "aa", "g_ab": "ab", "g_abs": "abs"}
    if metric not in suffix:
        raise ValueError(f"metric must be one of {sorted(suffix)}, got {metric!r}")
    if width % 100 or not 100 <= width <= 900:
        raise ValueError(f"width must be one of 100, 200, ..., 900, got {width!r}")
    path = huang2019_dir() / "univer" / f"{_ACT[activation]}_n{width // 100}_r{_tag(keep)}{suffix[metric]}_st.csv"
    x = _load(path)
    if x.size % networks:
        raise ValueError(f"{path.name}: {x.size} values are not a multiple of networks={networks}")
    return x.reshape(networks, -1)


def available_univer():
    """(activation, width, keep) triples present in univer/, sorted."""
    out = set()
    for p in (huang2019_dir() / "univer").glob("*_n*_r*aa_st.csv"):
        act, n, r = p.name[: -len("aa_st.csv")].split("_")
        out.add(({v: k for k, v in _ACT.items() if k != "htanh"}[act], int(n[1:]) * 100, int(r[1:]) / 10))
    return sorted(out)
