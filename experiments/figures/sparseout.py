"""Sparseout (Khan and Stavness 2019) in mean field: variance map and depth scales for several s.

Left: the variance map q -> meanfield.q_map(q, noise="sparseout", s) for tanh (dots: its stable
fixed point q*); s = 2 is inverted dropout. Middle and right: xi_c and xi_1 against sigma_w^2 from
``meanfield.analyze(noise="sparseout")`` (true derivative in the backward pass). For s <= 1 chi_1 is
infinite (|phi|^(s-2) is not integrable at 0), so s starts above 1.
"""
from __future__ import annotations

import numpy as np

import meanfield as mf

from . import style

S_VALUES = (1.25, 1.5, 2.0, 3.0)
KEEP = 0.6
SB = 0.05
MAP_SW = 2.0


def render(ctx):
    n = 15 if ctx.quick else 80
    q = np.linspace(0.0, 4.0, 2 * n)
    sws = np.linspace(0.5, 4.0, n)
    fig, axes = style.figure(1, 3, width=7.2, height=3.0)
    data = {"q": q, "sigma_w2": sws}
    ax = axes[0, 0]
    ax.plot(q, q, color=style.GREY, lw=0.8, ls=":", label="$q_{l+1} = q_l$")
    for i, s in enumerate(S_VALUES):
        colr = style.color(i)
        qm = mf.q_map(q, "tanh", MAP_SW, SB, KEEP, noise="sparseout", s=s)
        ln, = ax.plot(q, qm, color=colr, label=f"s = {s:g}" + (" (dropout)" if s == 2 else ""))
        ln.set_gid(f"{s:g}/q_map")
        qs = float(mf.q_star("tanh", MAP_SW, SB, KEEP, noise="sparseout", s=s))
        ax.plot([qs], [qs], "o", color=colr, ms=4)
        data[f"{s:g}/q_map"], data[f"{s:g}/q_star"] = qm, qs

        def compute():
            r = mf.analyze("tanh", sws, SB, KEEP, noise="sparseout", s=s, on_missing="nan")
            return {"xi_c": r.xi_c, "xi_1": r.xi_1}
        d = ctx.cache.get("sparseout", dict(act="tanh", keep=KEEP, sigma_b2=SB, s=s, sigma_w2=list(sws)),
                          compute)
        for ax2, name in zip(axes[0, 1:], ("xi_c", "xi_1")):
            ln, = ax2.plot(sws, d[name], color=colr)
            ln.set_gid(f"{s:g}/{name}")
            data[f"{s:g}/{name}"] = d[name]
    ax.set_xlabel("$q_l$")
    ax.set_ylabel("$q_{l+1}$")
    ax.set_title(f"variance map, $\\sigma_w^2$ = {MAP_SW:g}")
    ax.legend(loc="upper left")
    axes[0, 2].set_yscale("log")
    for ax2, sym in zip(axes[0, 1:], (r"$\xi_c$", r"$\xi_1$")):
        ax2.set_xlabel(r"$\sigma_w^2$")
        ax2.set_ylabel(f"{sym} (layers)")
        ax2.set_title(f"depth scale {sym}")
    fig.suptitle(f"Sparseout, tanh, {style.keep_label(KEEP)}, $\\sigma_b^2$ = {SB}: "
                 "s = 2 is dropout, s < 2 penalises small activations more", fontsize=9)
    return fig, data
