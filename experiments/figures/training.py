"""Figures 6 and 7: training speed and trainability of deep tanh dropout networks (MNIST).

Fig. 6 trains one network (``experiments.ensemble.EnsembleMLP``) per keep 1 / 0.99 / 0.98 and
(depth, learning rate) and records the first step at which the test accuracy (no dropout,
evaluated every ``eval_every`` steps) reaches 25 %; the curves of one (depth, learning rate) are one
cache entry.
Fig. 7 draws the accuracy of a sweep from ``experiments.trainability`` (the first complete database
of ``SOURCES``: ``results/trainability_cpu-large.sqlite``, else ``results/trainability_cpu.sqlite``;
else the figure's own sweep, resumable, in the cache) over (sigma_w^2, depth), one panel per noise
layer, with the trainable-depth boundary, the law fitted by ``experiments.fit`` and Schoenholz's
6 xi_c, both from that panel's noise layer (``meanfield.analyze``). The budget figure
(``experiments.figures.budget``) reads every checkpoint of the same rows.
"""
from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np

import meanfield as mf

from . import ROOT, style

SB = 0.05
SPEED_KEEPS = (1.0, 0.99, 0.98)
TARGET = 0.25


def _data_dir():
    shared = ROOT.parent / "shared" / "data"
    return shared if shared.is_dir() else None


def speed_protocol(quick):
    if quick:
        return dict(width=16, depths=(3, 6), lrs=(0.01, 0.1), steps=40, eval_every=5, batch_size=32,
                    test_size=200)
    return dict(width=64, depths=(10, 20, 40, 80), lrs=(0.001, 0.003, 0.01, 0.03, 0.1), steps=400,
                eval_every=10, batch_size=128, test_size=1000)


def _speed_run(depth, lr, sw, proto, data):
    """Test accuracy every eval_every steps for the keeps of SPEED_KEEPS, shape (evals, keeps).

    One ensemble (one network) per keep, as an ensemble holds one noise layer; each stops once it
    has reached the target, and its later evaluations are NaN (not run).
    """
    runs = [_speed_run_one(depth, lr, sw, keep, proto, data) for keep in SPEED_KEEPS]
    accs = np.full((max(map(len, runs)), len(runs)), np.nan)
    for j, a in enumerate(runs):
        accs[:len(a), j] = a[:, 0]
    return accs


def _speed_run_one(depth, lr, sw, keep, proto, data):
    """Test accuracies, shape (evals, 1), of one single-member ensemble until it reaches TARGET."""
    import torch
    import torch.nn.functional as F
    from experiments.ensemble import EnsembleMLP
    from experiments.models import MinibatchStream, NetConfig, TrainConfig, as_tensors, evaluate, make_optimizer
    tcfg = TrainConfig(optimizer="sgd", lr=lr, batch_size=proto["batch_size"], steps=proto["steps"],
                       test_size=proto["test_size"])
    xtr, ytr, xte, yte = as_tensors(data, tcfg, torch.float32)
    cfgs = [NetConfig(n_in=data.n_features, width=proto["width"], depth=depth, n_out=data.n_classes,
                      activation="tanh", sigma_w2=sw, sigma_b2=SB, noise=mf.Dropout(keep=keep))]
    model = EnsembleMLP(cfgs, [0] * len(cfgs))
    opt = make_optimizer(model.parameters(), tcfg)
    stream = MinibatchStream(len(xtr), tcfg.batch_size, tcfg.data_seed)
    accs = []
    for t in range(tcfg.steps + 1):
        if t % proto["eval_every"] == 0:
            model.eval()
            acc, _ = evaluate(model, xte, yte)
            accs.append(acc)
            model.train()
            if np.all(np.asarray(acc) >= TARGET):
                break  # every member has reached the target: later evaluations are not needed
        if t == tcfg.steps:
            break
        idx = torch.as_tensor(stream.next())
        logits = model(xtr[idx])
        m = logits.shape[0]
        per = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ytr[idx].repeat(m),
                              reduction="none").view(m, -1).mean(1)
        opt.zero_grad(set_to_none=True)
        per.sum().backward()
        opt.step()
    return np.array(accs)


def steps_to_target(accs, eval_every):
    """First evaluated step with accuracy >= TARGET per member; inf if never (censored)."""
    out = np.full(accs.shape[1], np.inf)
    for j in range(accs.shape[1]):
        hit = np.flatnonzero(accs[:, j] >= TARGET)
        if hit.size:
            out[j] = hit[0] * eval_every
    return out


def render_speed(ctx):
    proto = speed_protocol(ctx.quick)
    sw = round(float(mf.critical_sigma_w2("tanh", SB, 1.0)), 2)  # critical for rho = 1
    depths, lrs = proto["depths"], proto["lrs"]
    steps = np.full((len(SPEED_KEEPS), len(depths), len(lrs)), np.inf)
    data_set = None
    from tqdm import tqdm
    jobs = [(i, d, j, lr) for i, d in enumerate(depths) for j, lr in enumerate(lrs)]
    for i, d, j, lr in tqdm(jobs, desc="fig6 training", disable=not ctx.progress, leave=False):
        params = dict(proto, depth=d, lr=lr, sigma_w2=sw, sigma_b2=SB, keeps=SPEED_KEEPS,
                      activation="tanh", optimizer="sgd", target=TARGET, dataset="mnist")
        params.pop("depths"), params.pop("lrs")

        def compute():
            nonlocal data_set
            if data_set is None:
                from experiments.data import load_dataset
                data_set = load_dataset("mnist", _data_dir())
            return {"accs": _speed_run(d, lr, sw, proto, data_set)}
        accs = ctx.cache.get("speed", params, compute)["accs"]
        steps[:, i, j] = steps_to_target(accs, proto["eval_every"])
    fig, axes = style.figure(1, len(SPEED_KEEPS), width=7.2, height=2.9)
    finite = steps[np.isfinite(steps)]
    from matplotlib.colors import LogNorm
    norm = LogNorm(vmin=max(1, finite.min()) if finite.size else 1, vmax=proto["steps"])
    for k, keep in enumerate(SPEED_KEEPS):
        ax = axes[0, k]
        s = steps[k]
        shown = np.where(np.isfinite(s), np.maximum(s, 1), np.nan)
        im = ax.imshow(shown, origin="lower", aspect="auto", cmap=style.CMAP, norm=norm)
        im.set_gid(f"steps/{keep:g}")
        ax.set_facecolor("white")  # censored cells (target never reached) stay blank
        for (r, c), v in np.ndenumerate(s):
            txt = f">{proto['steps']}" if not np.isfinite(v) else f"{v:.0f}"
            light = np.isfinite(v) and norm(max(v, 1)) < 0.5
            ax.text(c, r, txt, ha="center", va="center", fontsize=6.5, color="w" if light else "k")
        ax.set_xticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
        ax.set_yticks(range(len(depths)), [str(d) for d in depths])
        ax.set_xlabel("SGD learning rate")
        ax.set_title(style.keep_label(keep))
        for side in ("top", "right"):
            ax.spines[side].set_visible(True)
    axes[0, 0].set_ylabel("depth $L$")
    cb = fig.colorbar(im, ax=axes[0, :].tolist(), shrink=0.9)
    cb.set_label(f"steps to {TARGET:.0%} test accuracy")
    fig.suptitle(f"Training speed, MNIST, tanh, $\\sigma_w^2$ = {sw} (critical for $\\rho$ = 1), "
                 f"$\\sigma_b^2$ = {SB}, width {proto['width']}, batch {proto['batch_size']}; "
                 f"blank: not reached in {proto['steps']} steps", fontsize=8)
    return fig, {"steps": steps, "depths": np.array(depths), "lrs": np.array(lrs), "sigma_w2": sw}


def trainability_sweep(quick):
    """The figures' own sweep (when no results database is there): one sweep with checkpoints,
    which serves Fig. 7 (its last step) and the budget figure (every checkpoint)."""
    from experiments.trainability import PRESETS, Sweep
    if quick:
        return Sweep(datasets=("mnist",), noises=("dropout(keep=1.0)", "dropout(keep=0.98)"),
                     depths=(2, 4, 8), sigma_w2s=(1.0, 2.0, 3.0, 4.0), width=16,
                     optimizer="rmsprop", lr=1e-3, batch_size=32, steps=20, checkpoints=(5, 10),
                     eval_size=200, test_size=200)
    return replace(PRESETS["cpu"], width=32, depths=(5, 10, 20, 40, 70), steps=400,
                   checkpoints=(25, 50, 100, 200), batch_size=64, max_members=16)


# presets whose results databases the figures read (their MNIST rows), best first
SOURCES = ("cpu-large", "cpu")


def trainability_rows(ctx, *, checkpoints: bool = False, min_budgets: int = 3):
    """(rows, description) of MNIST networks: the first complete database of ``SOURCES`` in
    ``ctx.results_dir`` (with at least ``min_budgets`` budgets when ``checkpoints``), else the
    figures' own sweep (resumable, in the cache).

    Parameters
    ----------
    ctx : Context
    checkpoints : bool
        Every checkpoint row (the budget figure); False: each network's last step only (Fig. 7).
    min_budgets : int
        Budgets a database needs to serve ``checkpoints``.

    Returns
    -------
    rows : list of dict
        Rows of ``experiments.trainability`` (``steps`` = checkpoint, ``max_steps`` = budget).
    description : str
        Where they come from.
    """
    from experiments.trainability import PRESETS, is_complete, open_store, run_sweep
    if not ctx.quick:
        for preset in SOURCES:
            db = ctx.results_dir / f"trainability_{preset}.sqlite"
            sweep = PRESETS[preset]
            if not db.is_file() or (checkpoints and len(sweep.budgets) < min_budgets):
                continue
            if is_complete(sweep, db):
                with open_store(db) as st:
                    rows = st.rows(dataset="mnist", max_steps=sweep.steps)
                return _last(rows, checkpoints), f"results/{db.name} ({preset} preset)"
    sweep = trainability_sweep(ctx.quick)
    path = ctx.cache.sqlite_path("trainability", asdict(sweep))
    run_sweep(sweep, path, data_dir=_data_dir(), device="cpu", preset="figure", engine="serial",
              progress=ctx.progress)
    with open_store(path) as st:
        rows = st.rows()
    return _last(rows, checkpoints), f"figure sweep (cache {path.name})"


def _last(rows, checkpoints):
    return rows if checkpoints else [r for r in rows if r["steps"] == r["max_steps"]]


def panel_of(noise) -> tuple[str, str]:
    """(data key, title) of a noise layer's panel: the keep probability and ``style.keep_label``
    for dropout (the papers' parameter), else the layer's spec for both."""
    from meanfield.noise import Dropout
    if type(noise) is Dropout:
        return f"{noise.keep:g}", style.keep_label(noise.keep)
    return noise.spec(), noise.spec()


def render_trainability(ctx):
    """Fig. 7 from ``trainability_rows(ctx)``: one panel per noise layer (boundary of
    ``experiments.fit``), its accuracy heatmap, boundary points, 6 xi_c and the law that predicts
    the other panels best (``fit.held_out_winner``; a*xi_c with one panel), drawn with that
    panel's own depth scales; returns (fig, data) with every drawn array under its ``gid``."""
    from experiments import fit as fitmod
    rows, source = trainability_rows(ctx)
    bounds = sorted(fitmod.extract_boundaries(rows), key=lambda b: (-b.keep, b.noise.spec()))
    law_name, theta = None, None
    try:
        law_name = (fitmod.held_out_winner(fitmod.compare_held_out(bounds)) if len(bounds) > 1
                    else None) or "a*xi_c"
        # a constant that ran off to its bound on all panels: draw the simpler law it amounts to
        law_name, theta = fitmod.simplest(law_name, fitmod.fit_law(law_name, bounds, n_boot=0).theta)
    except ValueError as exc:  # too few interior boundary points (small sweeps)
        law_name, theta, fit_note = None, None, f"no law fitted: {exc}"
    else:
        fit_note = ""
    fig, axes = style.figure(1, len(bounds), width=7.2 if len(bounds) > 1 else 4.0, height=3.3)
    panels = [panel_of(b.noise) for b in bounds]
    data = {"panels": [key for key, _ in panels], "law": law_name or "", "fit_note": fit_note,
            "theta": theta if theta is not None else np.array([])}
    sws_all = np.array(sorted({r["sigma_w2"] for r in rows}))
    depths_all = np.array(sorted({r["depth"] for r in rows}))
    fine = np.linspace(sws_all.min(), sws_all.max(), 200)
    from matplotlib.colors import Normalize
    norm = Normalize(0.0, 1.0)
    canonical = {t: mf.noise_from_spec(t).spec() for t in {r["noise"] for r in rows}}
    for k, (b, (key, title)) in enumerate(zip(bounds, panels)):
        ax = axes[0, k]
        acc = np.full((len(depths_all), len(sws_all)), np.nan)
        for r in rows:
            if canonical[r["noise"]] == b.noise.spec():
                i = np.searchsorted(depths_all, r["depth"])
                j = np.searchsorted(sws_all, r["sigma_w2"])
                v = r["eval_acc"]
                acc[i, j] = np.nanmean([acc[i, j], v]) if np.isfinite(acc[i, j]) else v
        xe = cell_edges(sws_all)
        ye = cell_edges(depths_all)
        im = ax.pcolormesh(xe, ye, acc, cmap=style.CMAP, norm=norm)
        im.set_gid(f"acc/{key}")
        data[f"{key}/accuracy"] = acc
        res = mf.analyze(b.activation, fine, b.sigma_b2, noise=b.noise)
        six = 6 * np.asarray(res.xi_c)
        ln, = ax.plot(fine, six, color=style.color(1), lw=1.5, label=r"$6\,\xi_c$ (Schoenholz)")
        ln.set_gid(f"{key}/6xi_c")
        data[f"{key}/sigma_w2_fine"], data[f"{key}/6xi_c"] = fine, six
        if law_name is not None:
            xc, x1 = fitmod.depth_scales(fine, b.noise, activation=b.activation, sigma_b2=b.sigma_b2)
            pred = fitmod.get_law(law_name).predict(theta, xc, x1)
            ln, = ax.plot(fine, pred, color=style.color(5), lw=1.5, ls="--",
                          label=f"fitted {law_name.replace('xi_1', 'ξ₁').replace('xi_c', 'ξ_c')}: "
                                + ", ".join(f"{t:.3g}" for t in theta))
            ln.set_gid(f"{key}/law")
            data[f"{key}/law"] = pred
        for c, mk, lab in ((0, "o", "boundary $L_{max}$"), (1, "^", "$L_{max}$ > (all train)"),
                           (-1, "v", "$L_{max}$ < (none trains)")):
            sel = b.censor == c
            if sel.any():
                ax.plot(b.sigma_w2[sel], b.L_max[sel], mk, color="w", mec="k", ms=4.5, label=lab)
        data[f"{key}/L_max"] = b.L_max
        ax.set_ylim(ye[0], ye[-1])
        ax.set_xlim(xe[0], xe[-1])
        ax.set_xlabel(r"$\sigma_w^2$")
        ax.set_title(title + (f"\n({fit_note})" if fit_note and k == 0 else ""))
    axes[0, 0].set_ylabel("depth $L$")
    h, lab = axes[0, 0].get_legend_handles_labels()
    fig.legend(h, lab, loc="outside lower center", ncol=3)
    cb = fig.colorbar(im, ax=axes[0, :].tolist(), shrink=0.9)
    cb.set_label("accuracy (training eval batch, no dropout)")
    r0 = rows[0]
    holes = any(np.isnan(data[f"{key}/accuracy"]).any() for key in data["panels"])
    fig.suptitle(f"Trainability, {r0['dataset']}, {r0['activation']}, $\\sigma_b^2$ = {r0['sigma_b2']:g}, "
                 f"width {r0['width']}, {r0['optimizer']} lr {r0['lr']:g}, {r0['steps']} steps; data: "
                 f"{source}" + ("\nblank cells: depths the boundary search did not train" if holes else ""),
                 fontsize=8)
    return fig, data


def cell_edges(v) -> np.ndarray:
    """Cell edges, shape (n + 1,), of a heatmap whose cells are centred on the sorted values ``v``,
    shape (n,): midpoints between neighbours, the outer edges mirrored (a single value: +- 0.5)."""
    v = np.asarray(v, float)
    if len(v) == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])
