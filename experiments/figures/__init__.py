"""Regenerate every figure of the toolkit: ``python -m experiments.figures [NAME ...] [--quick]``.

Each figure is a function ``render(ctx) -> (fig, data)`` in one of the group modules (maps,
gradients, universality, training, budget, phase, sparseout). Expensive inputs go through the disk cache
(:mod:`experiments.figures.cache`); theory curves are drawn from ``meanfield`` calls and carry the
matplotlib ``gid`` of the data key they show, so tests can read them back from the Figure and
compare them with the theory functions. ``data`` holds every plotted array under those keys.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from .cache import DEFAULT_DIR as DEFAULT_CACHE
from .cache import Cache

ROOT = Path(__file__).resolve().parents[2]  # the source checkout; outputs never go here
DEFAULT_OUT = Path("figures")  # relative to the working directory (also DEFAULT_CACHE)


@dataclass
class Context:
    """What a figure needs besides its own parameters: size mode, cache and data locations."""

    quick: bool = False
    cache: Cache = field(default_factory=lambda: Cache(DEFAULT_CACHE))
    progress: bool = True
    results_dir: Path = Path("results")  # relative to the working directory
    notes: dict = field(default_factory=dict)  # figure name -> text about the data it used


@dataclass(frozen=True)
class FigureSpec:
    name: str
    module: str
    function: str
    title: str


# name -> where it lives and what it shows (figures/README.md lists the same)
FIGURES = {s.name: s for s in (
    FigureSpec("fig1_maps", "maps", "render",
               "iterated q-map and c-map (linear, tanh, ReLU, erf; keep 1, 0.7, 0.4) with simulation"),
    FigureSpec("fig2_linear_gradients", "gradients", "render_linear",
               "linear network g_aa, g_ab per layer: exact, GIA, simulation, authors' data"),
    FigureSpec("fig3_nonlinear_gradients", "gradients", "render_nonlinear",
               "tanh / ReLU / hard-tanh g_aa and g~_ab per layer, chi_1 decay, exact, GIA"),
    FigureSpec("fig4_universality_aa", "universality", "render_aa",
               "variance vs mean of g_aa across widths, keep and activations"),
    FigureSpec("fig5_universality_ab", "universality", "render_ab",
               "variance vs mean of g~_ab across widths, keep and activations"),
    FigureSpec("fig6_training_speed", "training", "render_speed",
               "steps to 25 % test accuracy versus learning rate and depth, keep 1 / 0.99 / 0.98"),
    FigureSpec("fig7_trainability", "training", "render_trainability",
               "trainability heatmaps (sigma_w^2 x depth) with the fitted law and 6 xi_c"),
    FigureSpec("budget_trainable_depth", "budget", "render",
               "trainable depth L_max vs training budget T with the budget-aware law and a(T)"),
    FigureSpec("phase_depth_scales", "phase", "render",
               "xi_c and xi_1 over (sigma_w^2, sigma_b^2), with and without dropout"),
    FigureSpec("sparseout", "sparseout", "render",
               "Sparseout variance map and depth scales for several s"),
)}


@dataclass
class Rendered:
    name: str
    paths: list
    data: dict
    fig: object
    seconds: float


def render(name: str, ctx: Context, out) -> Rendered:
    """Render one figure into ``out`` (PNG and PDF) and return its plotted data."""
    if name not in FIGURES:
        raise ValueError(f"figure name must be one of {sorted(FIGURES)}, got {name!r}")
    from . import style
    spec = FIGURES[name]
    t = time.perf_counter()
    mod = importlib.import_module(f"{__name__}.{spec.module}")
    fig, data = getattr(mod, spec.function)(ctx)
    paths = style.savefig(fig, name, out)
    return Rendered(name, paths, data, fig, time.perf_counter() - t)


def render_all(names=None, *, quick=False, out=DEFAULT_OUT, cache_dir=None, progress=True) -> dict:
    """Render the named figures (default: all); returns ``{name: Rendered}``."""
    names = list(FIGURES) if not names else list(names)
    bad = [n for n in names if n not in FIGURES]
    if bad:
        raise ValueError(f"unknown figure name(s) {bad}; valid names: {', '.join(FIGURES)}")
    ctx = Context(quick=quick, cache=Cache(cache_dir or DEFAULT_CACHE), progress=progress)
    from tqdm import tqdm
    done = {}
    for n in tqdm(names, desc="figures", unit="fig", disable=not progress):
        done[n] = render(n, ctx, out)
    return done
