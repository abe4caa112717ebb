"""Trainable depth against the training budget T: the boundary L_max of a trainability sweep at
several budgets for a few sigma_w^2 per keep, with the budget-aware law of ``experiments.fit``
(the winner on held-out budgets, fitted on every budget) as theory curves L = a(T) xi(sigma_w^2),
and the per-budget constant a(T) (95 % bootstrap CI) against the fitted a(T).

Data: every checkpoint row of Fig. 7's source (``experiments.figures.training.trainability_rows``):
the first complete results database of ``SOURCES`` whose preset evaluates at least three budgets
(``results/trainability_cpu-large.sqlite``: checkpoints 60, 150 and the final 300 steps; the cpu
preset's two budgets are too few), else Fig. 7's own sweep in the cache (SGD lr 0.01, 400 steps,
checkpoints 25, 50, 100, 200; quick: 20 steps, checkpoints 5, 10), trained once for both figures.
A checkpoint row at step T is exactly the final row of the same network trained for T steps.
"""
from __future__ import annotations

import numpy as np

from . import style
from .training import panel_of, trainability_rows


def _chosen_sigmas(bs, n: int) -> np.ndarray:
    """Up to ``n`` sigma_w^2 values spread over those with an interior boundary at some budget."""
    inner = sorted({float(s) for b in bs for s, c in zip(b.sigma_w2, b.censor) if c == 0})
    pool = inner or sorted({float(s) for b in bs for s in b.sigma_w2})
    idx = np.unique(np.round(np.linspace(0, len(pool) - 1, min(n, len(pool)))).astype(int))
    return np.array(pool)[idx]


def draw(boundaries, law_fit=None, per_budget=None, *, n_sigma: int = 4, title: str = ""):
    """L_max against T per protocol (keep), law curves, and a(T).

    Parameters
    ----------
    boundaries : list of experiments.fit.Boundary
        Boundaries with budgets (``extract_boundaries(..., per_step='each')``), one panel per
        protocol, titled by its noise layer.
    law_fit : experiments.fit.FitResult, optional
        A budget-aware law fitted on every budget (None: points only).
    per_budget : dict, optional
        ``experiments.fit.per_budget_constants`` result ``{T: FitResult or NoFit}``.
    n_sigma : int
        Number of sigma_w^2 values drawn per panel.
    title : str
        Figure title.

    Returns
    -------
    fig, data
        The figure and every plotted array under the ``gid`` of its line:
        ``<panel>/<sigma_w2>/L_max`` (with ``.../T`` and ``.../censor``), ``<panel>/<sigma_w2>/law``
        (over ``T_fine``), ``a(T)/per_budget`` and ``a(T)/law``; ``<panel>`` is the keep
        probability (``0.98``) for dropout, else the noise layer's spec.
    """
    from experiments import fit as fitmod
    bs = [b for b in boundaries if b.budget is not None]
    if not bs:
        raise ValueError("boundaries need budgets (extract_boundaries with per_step='each')")
    panels = {}
    for b in bs:
        panels.setdefault(b.protocol, []).append(b)
    panels = sorted(panels.values(), key=lambda g: -g[0].keep)
    Ts = np.array(sorted({b.budget for b in bs}))
    T_fine = np.geomspace(Ts.min(), Ts.max(), 60)
    law = fitmod.get_law(law_fit.law) if law_fit is not None else None
    fig, axes = style.figure(1, len(panels) + 1, width=min(2.6 * (len(panels) + 1), 10.4), height=3.0)
    data = {"T_fine": T_fine, "budgets": Ts}
    for ax, group in zip(axes[0], panels):
        group = sorted(group, key=lambda b: b.budget)
        panel, panel_title = panel_of(group[0].noise)
        for k, s in enumerate(_chosen_sigmas(group, n_sigma)):
            T, L, cens, xc, x1 = [], [], [], None, None
            for b in group:
                j = np.flatnonzero(np.isclose(b.sigma_w2, s, rtol=1e-9))
                if j.size:
                    T.append(b.budget); L.append(b.L_max[j[0]]); cens.append(b.censor[j[0]])
                    xc, x1 = b.xi_c[j[0]], b.xi_1[j[0]]
            T, L, cens = np.array(T), np.array(L), np.array(cens)
            key = f"{panel}/{s:g}"
            data[f"{key}/T"], data[f"{key}/L_max"], data[f"{key}/censor"] = T, L, cens
            for c, mk in ((0, "o"), (1, "^"), (-1, "v")):
                sel = cens == c
                if sel.any():
                    ax.plot(T[sel], L[sel], mk, color=style.color(k), mec="k", mew=0.5, ms=4.5,
                            gid=f"{key}/L_max/{c}", label=rf"$\sigma_w^2$ = {s:g}" if c == 0 else None)
            if law is not None:
                pred = law.predict(list(law_fit.theta), xc, x1, T_fine)
                ax.plot(T_fine, pred, color=style.color(k), gid=f"{key}/law")
                data[f"{key}/law"] = pred
        ax.set_title(panel_title, fontsize=8)
    axes[0, 0].set_ylabel(r"trainable depth $L_{max}$")
    ax = axes[0, -1]
    if per_budget:
        ok = [(T, f) for T, f in per_budget.items() if isinstance(f, fitmod.FitResult)]
        Ta = np.array([T for T, _ in ok])
        a = np.array([f.theta[0] for _, f in ok])
        lo = np.array([f.ci_low[0] for _, f in ok])
        hi = np.array([f.ci_high[0] for _, f in ok])
        # a percentile interval may end a rounding error beside the estimate: no negative bars
        err = np.where(np.isfinite(lo), np.clip(np.vstack([a - lo, hi - a]), 0.0, None), 0.0)
        ax.errorbar(Ta, a, yerr=err, fmt="o", color="k", ms=4, gid="a(T)/per_budget",
                    label="a(T) fitted per budget")
        data["a(T)/per_budget"] = np.vstack([Ta, a, lo, hi])
    if law is not None:
        # a(T) of the law: its prediction at unit depth scales
        aT = law.predict(list(law_fit.theta), 1.0, 1.0, T_fine)
        ax.plot(T_fine, aT, color=style.color(4), gid="a(T)/law", label=law_fit.law)
        data["a(T)/law"] = aT
    ax.set_ylabel("a(T) = $L_{max}$ / depth scale")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)
    for ax in axes[0]:
        ax.set_xscale("log")
        ax.set_xticks(Ts, [f"{T:g}" for T in Ts])
        ax.minorticks_off()
        ax.set_xlabel("training steps $T$")
    from matplotlib.lines import Line2D
    h, lab = axes[0, 0].get_legend_handles_labels()
    h += [Line2D([], [], ls="", marker=m, color="w", mec="k") for m in "o^v"]
    lab += ["boundary", "lower bound (all depths train)", "upper bound (none trains)"]
    fig.legend(h, lab, loc="outside lower center", ncol=4)
    if title:
        fig.suptitle(title, fontsize=7)
    return fig, data


def render(ctx):
    """The figure from ``trainability_rows(ctx, checkpoints=True)``: boundaries per budget, a(T) per
    budget with CIs and the budget law that predicts held-out budgets best (fitted on all of them);
    returns (fig, data) as ``draw`` plus ``law`` and ``theta``."""
    from experiments import fit as fitmod
    rows, source = trainability_rows(ctx, checkpoints=True)
    bs = fitmod.extract_boundaries(rows, per_step="each")
    scale = "xi_c"
    n_boot = fitmod.MIN_BOOT if ctx.quick else 1000
    per_T = fitmod.per_budget_constants(bs, scale=scale, n_boot=n_boot)
    note, law_fit = "", None
    try:
        held = fitmod.compare_budgets(bs, scale=scale)
    except ValueError as exc:
        held, note = None, f"no budget law compared: {exc}"
    winner = fitmod.held_out_winner(held) if held is not None else None
    if winner is not None:
        f = fitmod.fit_all(bs, laws={winner: fitmod.budget_laws(scale)[winner]}, n_boot=0)[winner]
        law_fit = f if isinstance(f, fitmod.FitResult) else None
        note = (f"law (best on held-out budgets): {winner}, "
                + ", ".join(f"{p} = {t:.3g}" for p, t in zip(f.param_names, f.theta))
                if law_fit is not None else f"{winner}: {f.reason}")
    elif held is not None:
        note = "no budget law could be fitted"
    r0 = rows[0]
    title = (f"Trainable depth vs training budget, {r0['dataset']}, {r0['activation']}, width "
             f"{r0['width']}, {r0['optimizer']} lr {r0['lr']:g}\n{note}\ndata: {source}")
    fig, data = draw(bs, law_fit, per_T, title=title)
    data["law"] = law_fit.law if law_fit is not None else ""
    data["theta"] = law_fit.theta if law_fit is not None else np.array([])
    return fig, data
