"""Figures 2 and 3: per-layer gradient metrics of deep dropout networks (Huang et al. 2019).

Theory lines: ``meanfield.gradient_metrics(..., method="exact")`` (solid, no gradient-independence
assumption) and ``method="gia"`` (dashed), sum-of-squares loss, depth 200 (the authors' setting).
Simulation: ``meanfield.simulation.simulate_gradients`` (exact-in-distribution projected engine,
float64), mean over R networks with its standard error. Every network starts at the fixed point, so
only the distance from the output matters: a simulation of depth L_s < 200 is drawn at layers
200 - L_s + 1 ... 200. Authors' measurements: ``meanfield.reference`` (open grey-edged markers).
"""
from __future__ import annotations

import numpy as np

import meanfield as mf
from experiments import reference as ref

from . import style

SB = 0.1
DEPTH = 200  # theory and the authors' networks
EVERY = 10   # marker spacing in layers (authors' universality files sample every 10 layers too)
METRICS = ("g_aa", "g_ab", "g_abs")


def seed_for(act, keep, width):
    """One seed per (activation, keep, width): figures sharing a configuration share its cache."""
    acts = ("linear", "tanh", "relu", "hard_tanh", "erf")
    return 100_000 * (acts.index(act) + 1) + 100 * round(100 * keep) + width // 10


def grad_sim(ctx, act, sw, keep, width, depth, reals, seed=None):
    """Cached simulation: per-layer mean and sem of each metric, and the per-network values at
    layers 1, 1 + EVERY, ... (for variance-vs-mean plots). Index 0 = layer 1 of the simulation."""
    seed = seed_for(act, keep, width) if seed is None else seed
    params = dict(act=act, sigma_w2=sw, sigma_b2=SB, keep=keep, width=width, depth=depth,
                  realisations=reals, seed=seed, noise="dropout", loss="sum_squares",
                  engine="projected")

    def compute():
        import torch
        from meanfield.simulation import simulate_gradients
        torch.set_num_threads(min(torch.get_num_threads(), 2))
        r = simulate_gradients(act, sw, SB, keep, width=width, depth=depth, realisations=reals,
                               seed=seed, progress=False)
        out = {}
        for m in METRICS:
            x = getattr(r, m)
            out[f"{m}_mean"], out[f"{m}_sem"] = r.mean(m), r.sem(m)
            out[f"{m}_samples"] = x[:, ::EVERY]
        return out
    return ctx.cache.get("grad_sim", params, compute)


def _authors(loader, *args):
    try:
        return loader(*args)
    except FileNotFoundError:
        return None


def _plot_metric(ax, data, key, layers, theory_ex, theory_gia, sim, authors, colr, label):
    ln, = ax.plot(layers, theory_ex, color=colr, label=label)
    ln.set_gid(f"{key}/exact")
    if theory_gia is not None:
        ln, = ax.plot(layers, theory_gia, color=colr, ls="--", lw=1.0)
        ln.set_gid(f"{key}/gia")
        data[f"{key}/gia"] = theory_gia
    data[f"{key}/exact"] = theory_ex
    if sim is not None:
        m, e, sl = sim
        pick = np.arange(len(m))[::-1][::EVERY // 2][::-1]  # every 5th layer, ending at the output
        ok = m[pick] > 0
        ax.errorbar(sl[pick][ok], m[pick][ok], yerr=e[pick][ok], fmt="o", ms=3, color=colr, lw=0.8)
        data[f"{key}/sim_layers"], data[f"{key}/sim_mean"], data[f"{key}/sim_sem"] = sl, m, e
    if authors is not None:
        pick = np.arange(2, DEPTH, EVERY)
        ok = authors[pick] > 0
        ax.plot(layers[pick][ok], authors[pick][ok], ls="none", marker="D", ms=3.5, mfc="none",
                mec=colr, mew=0.8)
        data[f"{key}/authors"] = authors


def _legend_proxies(ax, extra=()):
    from matplotlib.lines import Line2D
    h = [Line2D([], [], color="k", label="exact theory (no GIA)"),
         Line2D([], [], color="k", ls="--", lw=1.0, label="GIA theory"),
         Line2D([], [], color="k", marker="o", ls="none", ms=3, label="simulation (mean ± sem)"),
         Line2D([], [], color="k", marker="D", ls="none", ms=3.5, mfc="none",
                label="Huang et al. 2019 data"), *extra]
    return h


LINEAR_KEEPS = (0.6, 0.7, 0.8, 0.9, 1.0)


def linear_sizes(quick):
    return dict(width=100, depth=30, reals=10) if quick else dict(width=1000, depth=200, reals=100)


def render_linear(ctx):
    sw = 0.5
    sz = linear_sizes(ctx.quick)
    fig, axes = style.figure(1, 2, width=7.2, height=3.4)
    layers = np.arange(1, DEPTH + 1)
    data = {"layers": layers}
    from tqdm import tqdm
    for i, keep in enumerate(tqdm(LINEAR_KEEPS, desc="fig2 simulations", disable=not ctx.progress,
                                  leave=False)):
        ex = mf.gradient_metrics("linear", sw, SB, keep, DEPTH, method="exact")
        gi = mf.gradient_metrics("linear", sw, SB, keep, DEPTH, method="gia")
        sim = grad_sim(ctx, "linear", sw, keep, sz["width"], sz["depth"], sz["reals"])
        sl = np.arange(DEPTH - sz["depth"] + 1, DEPTH + 1)
        for ax, m in zip(axes[0], ("g_aa", "g_ab")):
            _plot_metric(ax, data, f"linear/{keep:g}/{m}", layers, np.asarray(getattr(ex, m)),
                         np.asarray(getattr(gi, m)), (sim[f"{m}_mean"], sim[f"{m}_sem"], sl),
                         _authors(ref.load_fig2, keep, m, 1000), style.color(i),
                         style.keep_label(keep))
    for ax, m, lab in zip(axes[0], ("g_aa", "g_ab"), ("$g_{aa}^l$", "$g_{ab}^l$")):
        ax.set_yscale("log")
        ax.set_xlabel("layer $l$ (output: $l$ = 200)")
        ax.set_ylabel(f"mean {lab}")
        ax.set_xlim(0, DEPTH + 2)
    axes[0, 0].set_title(r"single input: $g_{aa}$ decays with $\chi_1 = \sigma_w^2/\rho$")
    axes[0, 1].set_title(r"pair: $g_{ab}$ (exact mean); data hit a noise floor")
    h1, l1 = axes[0, 0].get_legend_handles_labels()
    fig.legend(h1 + _legend_proxies(None), l1 + [p.get_label() for p in _legend_proxies(None)],
               loc="outside lower center", ncol=5)
    fig.suptitle(f"Linear networks, $\\sigma_w^2$ = {sw}, $\\sigma_b^2$ = {SB}, loss $\\sum_i y_i^2$. "
                 f"Simulation N = {sz['width']}, L = {sz['depth']}, R = {sz['reals']}; "
                 "data: N = 1000, L = 200", fontsize=9)
    return fig, data


NONLINEAR = (("tanh", 1.4), ("relu", 1.0), ("hard_tanh", 1.4))
NONLINEAR_KEEPS = (0.6, 0.8, 1.0)


def nonlinear_sizes(quick):
    return dict(width=100, depth=30, reals=10) if quick else dict(width=500, depth=200, reals=50)


def render_nonlinear(ctx):
    sz = nonlinear_sizes(ctx.quick)
    fig, axes = style.figure(len(NONLINEAR), 2, width=7.2, height=7.4)
    layers = np.arange(1, DEPTH + 1)
    data = {"layers": layers}
    sl = np.arange(DEPTH - sz["depth"] + 1, DEPTH + 1)
    from tqdm import tqdm
    jobs = [(a, sw, k) for a, sw in NONLINEAR for k in NONLINEAR_KEEPS]
    for a, sw, keep in tqdm(jobs, desc="fig3 simulations", disable=not ctx.progress, leave=False):
        row = [x for x, _ in NONLINEAR].index(a)
        i = NONLINEAR_KEEPS.index(keep)
        colr = style.color(i)
        ex = mf.gradient_metrics(a, sw, SB, keep, DEPTH, method="exact")
        gi = mf.gradient_metrics(a, sw, SB, keep, DEPTH, method="gia")
        sim = grad_sim(ctx, a, sw, keep, sz["width"], sz["depth"], sz["reals"])
        key = f"{a}/{keep:g}"
        chi1 = float(ex.chi_1)
        _plot_metric(axes[row, 0], data, f"{key}/g_aa", layers, np.asarray(ex.g_aa),
                     np.asarray(gi.g_aa), (sim["g_aa_mean"], sim["g_aa_sem"], sl),
                     _authors(ref.load_fig3, a, keep, "g_aa"), colr,
                     style.keep_label(keep) + f", $\\xi_1$ = {1 / abs(np.log(chi1)):.1f}")
        # g~_ab: the mean |dE_a/dW dE_b/dW|, no closed theory; its decay follows chi_1 (the
        # finite-width floor), shown as A chi_1^(L-l) anchored at the simulated output layer
        ax = axes[row, 1]
        m, e = sim["g_abs_mean"], sim["g_abs_sem"]
        pick = np.arange(len(m))[::-1][::EVERY // 2][::-1]
        ax.errorbar(sl[pick], m[pick], yerr=e[pick], fmt="o", ms=3, color=colr, lw=0.8)
        data[f"{key}/g_abs/sim_layers"], data[f"{key}/g_abs/sim_mean"] = sl, m
        decay = m[-1] * chi1 ** (DEPTH - layers)
        ln, = ax.plot(layers, decay, color=colr, ls="-.", lw=1.0)
        ln.set_gid(f"{key}/g_abs/chi1_decay")
        data[f"{key}/g_abs/chi1_decay"], data[f"{key}/chi_1"] = decay, chi1
        ln, = ax.plot(layers, np.where(ex.g_ab > 0, ex.g_ab, np.nan), color=colr, lw=0.8, alpha=0.6)
        ln.set_gid(f"{key}/g_ab/exact")
        data[f"{key}/g_ab/exact"] = np.asarray(ex.g_ab)
        au = _authors(ref.load_fig3, a, keep, "g_abs")
        if au is not None:
            p = np.arange(2, DEPTH, EVERY)
            ok = au[p] > 0
            ax.plot(layers[p][ok], au[p][ok], ls="none", marker="D", ms=3.5, mfc="none", mec=colr,
                    mew=0.8)
            data[f"{key}/g_abs/authors"] = au
    for row, (a, sw) in enumerate(NONLINEAR):
        for col, lab in enumerate(("mean $g_{aa}^l$", r"mean $\tilde g_{ab}^l$")):
            ax = axes[row, col]
            ax.set_yscale("log")
            ax.set_ylabel(lab)
            ax.set_xlim(0, DEPTH + 2)
            ax.set_title(f"{a}, $\\sigma_w^2$ = {sw}, $\\sigma_b^2$ = {SB}")
            ax.set_ylim(bottom=max(ax.get_ylim()[0], 1e-30))
        axes[row, 0].legend(loc="best", fontsize=6.5, frameon=True, framealpha=0.85, edgecolor="none")
    for ax in axes[-1]:
        ax.set_xlabel("layer $l$ (output: $l$ = 200)")
    from matplotlib.lines import Line2D
    extra = (Line2D([], [], color="k", ls="-.", lw=1.0, label=r"$A\,\chi_1^{L-l}$ ($\tilde g_{ab}$ panels)"),
             Line2D([], [], color="k", lw=0.8, alpha=0.6, label=r"exact mean $g_{ab}$ ($\tilde g_{ab}$ panels)"))
    hs = _legend_proxies(None, extra)
    fig.legend(hs, [h.get_label() for h in hs], loc="outside lower center", ncol=3)
    fig.suptitle(f"Nonlinear dropout networks, loss $\\sum_i y_i^2$. Simulation N = {sz['width']}, "
                 f"L = {sz['depth']}, R = {sz['reals']}; data: N = 1000 (caption), L = 200", fontsize=9)
    return fig, data
