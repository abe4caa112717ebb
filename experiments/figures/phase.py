"""Depth-scale phase diagram: xi_c and xi_1 of tanh networks over (sigma_w^2, sigma_b^2).

``meanfield.phase_diagram`` on a grid (cached; the full grid is 200 x 200, c* from the verified
pair-integral table), without dropout (rho = 1) and with dropout (rho = 0.9). The dashed
line is the critical line chi_1 = 1 (``critical_sigma_w2``). Without dropout xi_c diverges on it;
with dropout xi_c stays finite everywhere while xi_1 still diverges there.
"""
from __future__ import annotations

import numpy as np

import meanfield as mf

from . import style

KEEPS = (1.0, 0.9)
CAP = 200.0  # colour scale ceiling (depth scales diverge at criticality)


def grid(quick):
    return (np.linspace(0.5, 4.0, 12 if quick else 200), np.linspace(0.01, 0.3, 8 if quick else 200))


def render(ctx):
    sw, sb = grid(ctx.quick)
    fig, axes = style.figure(2, len(KEEPS), width=6.4, height=5.4)
    data = {"sigma_w2": sw, "sigma_b2": sb}
    from matplotlib.colors import LogNorm
    norm = LogNorm(1.0, CAP)
    for k, keep in enumerate(KEEPS):
        def compute():
            pd = mf.phase_diagram("tanh", sw, sb, keep)
            return {"xi_c": pd.result.xi_c, "xi_1": pd.result.xi_1, "critical": pd.critical_sigma_w2}
        d = ctx.cache.get("phase", dict(act="tanh", keep=keep, sigma_w2=list(sw), sigma_b2=list(sb)), compute)
        for row, (name, sym) in enumerate((("xi_c", r"$\xi_c$"), ("xi_1", r"$\xi_1$"))):
            ax = axes[row, k]
            z = np.clip(d[name], 1.0, CAP)
            im = ax.pcolormesh(sw, sb, z, cmap=style.CMAP, norm=norm, shading="nearest")
            im.set_gid(f"{keep:g}/{name}")
            data[f"{keep:g}/{name}"] = d[name]
            ln, = ax.plot(d["critical"], sb, "--", color="w", lw=1.3, label=r"$\chi_1 = 1$")
            ln.set_gid(f"{keep:g}/critical")
            data[f"{keep:g}/critical"] = d["critical"]
            ax.set_xlim(sw[0], sw[-1])
            ax.set_ylim(sb[0], sb[-1])
            ax.set_title(f"{sym}, {style.keep_label(keep)}")
            if row == 1:
                ax.set_xlabel(r"$\sigma_w^2$")
            if k == 0:
                ax.set_ylabel(r"$\sigma_b^2$")
    axes[0, 0].legend(loc="upper left", labelcolor="w")
    cb = fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, extend="max")
    cb.set_label(f"depth scale (layers; clipped at {CAP:g})")
    fig.suptitle(f"tanh depth scales, grid {len(sw)} x {len(sb)} ($\\sigma_w^2$ x $\\sigma_b^2$)",
                 fontsize=9)
    return fig, data
