"""Figure 1: iterated variance (q) and correlation (c) maps with finite-width simulation.

Theory: ``q^{l+1} = meanfield.q_map(q^l)`` and ``c^{l+1} = meanfield.c_map(q^l, c^l)`` (two inputs of
equal variance, independent dropout masks), iterated from two starting points each; dotted lines
mark q* and c* from ``meanfield.analyze``. Simulation: random networks of width N (numpy, float64),
pre-activations ``z^{l+1} = W (m * phi(z^l) / rho) + b`` (dropout by ``meanfield.nn``), six inputs
per network sharing W and b with independent masks; points are means over R networks, bars one
standard deviation (the spread of a single network, not the error of the mean).
"""
from __future__ import annotations

import numpy as np

import meanfield as mf

from . import style

ACTS = (("linear", 0.35), ("relu", 0.75), ("tanh", 1.5), ("erf", 1.5))  # finite q* at keep 0.4
KEEPS = (1.0, 0.7, 0.4)
SB = 0.1
Q0 = (0.02, 3.0)
C0 = (0.05, 0.99)


def sizes(quick):
    return dict(width=100, depth=10, realisations=6) if quick else dict(width=500, depth=20,
                                                                        realisations=20)


def theory(act, sw, keep, depth):
    """Iterated maps: q from each Q0; c (and its q) from q* with each C0. Shapes (2, depth+1)."""
    q = np.empty((2, depth + 1))
    q[:, 0] = Q0
    for l in range(depth):
        q[:, l + 1] = mf.q_map(q[:, l], act, sw, SB, keep)
    qs = float(mf.q_star(act, sw, SB, keep))
    c = np.empty((2, depth + 1))
    c[:, 0] = C0
    qc = np.full(2, qs)
    for l in range(depth):
        c[:, l + 1] = mf.c_map(qc, c[:, l], act, sw, SB, keep)
        qc = mf.q_map(qc, act, sw, SB, keep)
    return q, c


def simulate(act, sw, keep, width, depth, realisations, seed):
    """Per network and layer: q of the two Q0 inputs and c of the two C0 pairs, (R, 2, depth+1)."""
    import torch

    from meanfield.nn import draws, unit_noise
    phi = mf.get_activation(act).phi
    noise = mf.Dropout(keep=keep)
    rng = np.random.default_rng(seed)
    qs = float(mf.q_star(act, sw, SB, keep))
    q_out = np.empty((realisations, 2, depth + 1))
    c_out = np.empty_like(q_out)
    for r in range(realisations):
        e = rng.standard_normal((width, 6))
        z = np.empty((width, 6))
        z[:, 0], z[:, 1] = np.sqrt(Q0[0]) * e[:, 0], np.sqrt(Q0[1]) * e[:, 1]
        for j, c0 in enumerate(C0):
            a, b = e[:, 2 + 2 * j], e[:, 3 + 2 * j]
            z[:, 2 + 2 * j] = np.sqrt(qs) * a
            z[:, 3 + 2 * j] = np.sqrt(qs) * (c0 * a + np.sqrt(1 - c0 ** 2) * b)
        for l in range(depth + 1):
            n2 = np.mean(z * z, axis=0)
            q_out[r, :, l] = n2[:2]
            for j in range(2):
                za, zb = z[:, 2 + 2 * j], z[:, 3 + 2 * j]
                c_out[r, j, l] = za @ zb / np.sqrt((za @ za) * (zb @ zb))
            if l == depth:
                break
            x = phi(z)
            if draws(noise):  # the noise layer's own forward, on uniforms from the figure's stream
                x = unit_noise(noise, torch.from_numpy(x), torch.from_numpy(rng.random(x.shape))).numpy()
            w = rng.standard_normal((width, width)) * np.sqrt(sw / width)
            z = w @ x + rng.standard_normal((width, 1)) * np.sqrt(SB)
    return q_out, c_out


def render(ctx):
    sz = sizes(ctx.quick)
    depth = sz["depth"]
    fig, axes = style.figure(2, len(ACTS), width=7.2, height=4.6)
    data = {"layers": np.arange(depth + 1)}
    from tqdm import tqdm
    jobs = [(a, sw, k) for a, sw in ACTS for k in KEEPS]
    for a, sw, keep in tqdm(jobs, desc="fig1 maps", disable=not ctx.progress, leave=False):
        col = [x for x, _ in ACTS].index(a)
        i = KEEPS.index(keep)
        params = dict(act=a, sigma_w2=sw, sigma_b2=SB, keep=keep, q0=Q0, c0=C0, seed=11 + i, **sz)
        sim = ctx.cache.get("maps_sim", params, lambda: dict(zip(
            ("q", "c"), simulate(a, sw, keep, sz["width"], depth, sz["realisations"], 11 + i))))
        q_th, c_th = theory(a, sw, keep, depth)
        res = mf.analyze(a, sw, SB, keep)
        key = f"{a}/{keep:g}"
        data.update({f"{key}/q_theory": q_th, f"{key}/c_theory": c_th,
                     f"{key}/q_star": float(res.q_star), f"{key}/c_star": float(res.c_star),
                     f"{key}/q_sim_mean": sim["q"].mean(0), f"{key}/q_sim_sd": sim["q"].std(0, ddof=1),
                     f"{key}/c_sim_mean": sim["c"].mean(0), f"{key}/c_sim_sd": sim["c"].std(0, ddof=1)})
        colr = style.color(i)
        l = data["layers"]
        for row, (th, name, star) in enumerate(((q_th, "q", res.q_star), (c_th, "c", res.c_star))):
            ax = axes[row, col]
            m, sd = data[f"{key}/{name}_sim_mean"], data[f"{key}/{name}_sim_sd"]
            for j in range(2):
                ln, = ax.plot(l, th[j], color=colr, label=style.keep_label(keep) if j == 0 else None)
                ln.set_gid(f"{key}/{name}_theory/{j}")
                ax.errorbar(l, m[j], yerr=sd[j], fmt="o", ms=2.5, color=colr, alpha=0.8, lw=0.8,
                            label="simulation (mean ± sd)" if (j == 0 and i == 0) else None)
            hl = ax.axhline(float(star), color=colr, ls=":", lw=1.0)
            hl.set_gid(f"{key}/{name}_star")
    for col, (a, sw) in enumerate(ACTS):
        axes[0, col].set_title(f"{a}, $\\sigma_w^2$ = {sw:g}, $\\sigma_b^2$ = {SB:g}")
        axes[0, col].set_yscale("log")
        axes[1, col].set_ylim(0, 1.02)
        axes[1, col].set_xlabel("layer $l$")
    axes[0, 0].set_ylabel("variance $q^l$")
    axes[1, 0].set_ylabel("correlation $c^l$")
    h, lab = axes[0, 0].get_legend_handles_labels()
    fig.legend(h, lab, loc="outside lower center", ncol=4)
    fig.suptitle(f"Iterated q- and c-maps: theory (lines), q*, c* (dotted), simulation "
                 f"N = {sz['width']}, R = {sz['realisations']} networks", fontsize=9)
    return fig, data
