"""Figures 4 and 5: variance V versus mean m of the gradient metrics over random networks.

Per sampled layer (1, 11, ..., 191 as in the authors' files), m and V are the mean and variance of
the metric over R networks; log V against log m is close to a straight line (Huang et al. 2019).
Filled markers: simulation (``meanfield.simulation``, cached via ``gradients.grad_sim``); open
markers: the authors' per-network values (``meanfield.reference.load_univer``); lines: least-squares
fits ``experiments.universality.fit_log_log`` to the simulated points, exponents in the legend
(simulation / authors). Three panels: widths (tanh, keep 0.9), keep (tanh, N = 500), activations
(keep 0.8, N = 500).
"""
from __future__ import annotations

import numpy as np

from experiments import reference as ref
from experiments.universality import fit_log_log, mean_variance

from . import style
from .gradients import SB, grad_sim

SIGMA_W2 = {"tanh": 1.4, "relu": 1.0, "hard_tanh": 1.4, "linear": 0.5}


def sizes(quick):
    if quick:
        return dict(widths=(100, 300), keeps=(0.8, 1.0), acts=("tanh", "relu"), width=100, depth=30,
                    reals=10)
    return dict(widths=(100, 300, 500, 700, 900), keeps=(0.6, 0.7, 0.8, 0.9, 1.0),
                acts=("tanh", "relu", "hard_tanh", "linear"), width=500, depth=200, reals=50)


def _mv(samples):
    x = np.abs(samples)  # g_ab can be negative; |.| as in the authors' analysis
    x = x[:, np.all(x > 0, axis=0)]  # the authors' float32 files store underflow as 0
    if x.shape[1] < 3:
        return None
    return mean_variance(x)


def _render(ctx, metric, symbol):
    sz = sizes(ctx.quick)
    n0 = sz["width"]
    panels = (("width", [("tanh", 0.9, n) for n in sz["widths"]], "tanh, $\\rho$ = 0.9"),
              ("keep", [("tanh", k, n0) for k in sz["keeps"]], f"tanh, N = {n0}"),
              ("activation", [(a, 0.8, n0) for a in sz["acts"]], f"$\\rho$ = 0.8, N = {n0}"))
    fig, axes = style.figure(1, 3, width=7.2, height=3.3)
    data = {}
    jobs = [(p, j, c) for p, (_, cases, _) in enumerate(panels) for j, c in enumerate(cases)]
    from tqdm import tqdm
    for p, j, (act, keep, n) in tqdm(jobs, desc=f"universality {metric}", disable=not ctx.progress,
                                     leave=False):
        ax = axes[0, p]
        vary = panels[p][0]
        lab = {"width": f"N = {n}", "keep": f"$\\rho$ = {keep:g}", "activation": act}[vary]
        colr = style.color(j)
        sim = grad_sim(ctx, act, SIGMA_W2[act], keep, n, sz["depth"], sz["reals"])
        key = f"{vary}/{act}/{keep:g}/{n}"
        mv = _mv(sim[f"{metric}_samples"])
        text = lab
        if mv is not None:
            m, v = mv
            fit = fit_log_log(m, v)
            ax.plot(m, v, "o", color=colr, ms=3.5)
            mm = np.geomspace(m.min(), m.max(), 50)
            ln, = ax.plot(mm, fit.predict(mm), color=colr, lw=1.0)
            ln.set_gid(f"{key}/fit")
            data.update({f"{key}/sim_m": m, f"{key}/sim_V": v, f"{key}/fit_m": mm,
                         f"{key}/fit_V": fit.predict(mm), f"{key}/exponent": fit.exponent})
            text += f": {fit.exponent:.2f}"
        try:
            au = ref.load_univer(act, n, keep, metric)[:, :20]  # 21st value: unidentified, left out
        except (FileNotFoundError, ValueError):
            au = None
        amv = _mv(au) if au is not None else None
        if amv is not None:
            ax.plot(amv[0], amv[1], "D", mfc="none", mec=colr, ms=3.5, mew=0.8)
            afit = fit_log_log(*amv)
            data.update({f"{key}/authors_m": amv[0], f"{key}/authors_V": amv[1],
                         f"{key}/authors_exponent": afit.exponent})
            text += f" / {afit.exponent:.2f}"
        ax.plot([], [], "o-", color=colr, ms=3.5, lw=1.0, label=text)
    for ax, (vary, _, title) in zip(axes[0], panels):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"mean $m$ of {symbol} over networks")
        ax.set_title(f"varying {vary}: {title}")
        ax.legend(title="exponent: sim. / data", loc="upper left", title_fontsize=7)
    axes[0, 0].set_ylabel(f"variance $V$ of {symbol}")
    from matplotlib.lines import Line2D
    hs = [Line2D([], [], color="k", marker="o", ls="none", ms=3.5,
                 label=f"simulation (layers 1, 11, ..., of L = {sz['depth']})"),
          Line2D([], [], color="k", lw=1.0, label="fit $\\ln V = a \\ln m + b$ to simulation"),
          Line2D([], [], color="k", marker="D", mfc="none", ls="none", ms=3.5, label="Huang et al. 2019 data")]
    fig.legend(handles=hs, loc="outside lower center", ncol=3)
    fig.suptitle(f"Universality of {symbol} fluctuations: simulation R = {sz['reals']} networks, "
                 f"L = {sz['depth']}; data R = 100, L = 200; $\\sigma_b^2$ = {SB}", fontsize=9)
    return fig, data


def render_aa(ctx):
    return _render(ctx, "g_aa", "$g_{aa}$")


def render_ab(ctx):
    return _render(ctx, "g_abs", r"$\tilde g_{ab}$")
