"""Finite-width k-winners networks against the mean field of meanfield.kwinners.

    python -m experiments.kwinners_study [--db results/kwinners_study.sqlite] [--reps 300]
        [--depth 20] [--f 0.5 0.2 0.1 0.05] [--n 1000 4000] [--quick]
        [--serial | --workers N | --scheduler tcp://HOST:PORT]

One table row per (setting, f, N) is one task of ``experiments.runner`` (Dask by default).

Networks of width N in {1000, 4000}, f in {0.5, 0.2, 0.1, 0.05}, exact top-k (k = round(f N))
after every layer, Gaussian fan-in weights and Gaussian biases (float64). Two settings:

- ``fixed``: sigma_w^2 = 0.9 / G(f) (chi_q = 0.9), sigma_b^2 = 0.05; two inputs start at q = q*
  and c = 0.9; the mean-field trajectory (q^l, c^l) is iterated from the same start. chi_1 is
  measured by back-propagating a fresh Gaussian readout gradient through the same weights.
- ``critical``: sigma_w^2 = 1/G(f), sigma_b^2 = 0 (forward critical): the mean field keeps q
  constant; the simulation shows the finite-width drift of ln q per layer.

Engine ("projected", exact in law and O(N) per layer): given the layer input X (N x 2), the rows of
a Gaussian W make W X i.i.d. Gaussian rows with covariance (sigma_w^2/N) X^T X, so W X is sampled
directly; the backward pass uses W conditioned on W X = Y, i.e. W = Y X^+ + W'(I - P_X) with W' an
independent copy, so W^T d = X^{+T} Y^T d + (I - P_X) W'^T d. ``engine="dense"`` draws full
matrices instead (used to check the projected engine).

Reported per (f, N): G_N/G - 1 (the exact finite-k gain E[(1/N) sum_top-k z^2] vs the infinite-N
one, by Monte Carlo over i.i.d. normals), relative deviation of q at depth L, deviation of c at
depth L (and the largest over layers), relative deviation of the per-layer gradient factor chi_1,
each with its Monte Carlo standard error; for ``critical`` the mean per-layer drift of ln q.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from meanfield import kwinners as kw

ROOT = Path(__file__).resolve().parents[1]
FS = (0.5, 0.2, 0.1, 0.05)
NS = (1000, 4000)
SETTINGS = ("fixed", "critical")


def setting_params(setting: str, f: float) -> tuple[float, float]:
    """(sigma_w2, sigma_b2) of a setting."""
    if setting == "fixed":
        return 0.9 / float(kw.G(f)), 0.05
    if setting == "critical":
        return 1.0 / float(kw.G(f)), 0.0
    raise ValueError(f"setting must be one of {SETTINGS}; got {setting!r}")


def _topk(z: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the k largest entries of each column of z (N x m)."""
    kth = np.partition(z, -k, axis=0)[-k]
    return z >= kth


def simulate(f, n, sigma_w2, sigma_b2, depth, q1, c1, rng, engine="projected"):
    """One network, two inputs: per-layer (q_a, q_b, c) of the pre-activations z^1..z^depth and
    the per-layer gradient norms |delta^l|^2/N (readout gradient at layer depth).

    The inputs x^0 have |x|^2/N = (q1 - sigma_b2)/sigma_w2 and the correlation that gives z^1
    variance q1 and correlation c1 in expectation.
    """
    k = int(round(f * n))
    s0 = (q1 - sigma_b2) / sigma_w2
    u, v = rng.standard_normal((2, n))
    u *= np.sqrt(n) / np.linalg.norm(u)
    v -= u * (u @ v) / n
    v *= np.sqrt(n) / np.linalg.norm(v)
    c0 = (c1 * q1 - sigma_b2) / (q1 - sigma_b2)  # input correlation that gives z^1 correlation c1
    x = np.sqrt(s0) * np.stack([u, c0 * u + np.sqrt(1 - c0 * c0) * v], axis=1)  # N x 2
    sw = np.sqrt(sigma_w2 / n)
    xs, ys, ws, masks, stats = [], [], [], [], []
    for _ in range(depth):
        b = rng.normal(0.0, np.sqrt(sigma_b2), n)[:, None] if sigma_b2 > 0 else 0.0
        if engine == "dense":
            w = rng.normal(0.0, sw, (n, n))
            y = w @ x
            ws.append(w)
        else:
            gram = (sigma_w2 / n) * (x.T @ x)
            y = rng.standard_normal((n, 2)) @ np.linalg.cholesky(gram).T
        z = y + b
        qa, qb = np.mean(z * z, axis=0)
        stats.append((qa, qb, np.mean(z[:, 0] * z[:, 1]) / np.sqrt(qa * qb)))
        m = _topk(z, k)
        xs.append(x)
        ys.append(y)
        masks.append(m[:, 0])
        x = np.where(m, z, 0.0)
    # backward for input a: readout gradient e at x^depth, delta^l = mask^l * dE/dx^l
    d = rng.standard_normal(n) * masks[-1]
    grads = [d @ d / n]
    for layer in range(depth - 1, 0, -1):
        xl, yl = xs[layer], ys[layer]
        if engine == "dense":
            g = ws[layer].T @ d
        else:
            pinv = np.linalg.solve(xl.T @ xl, xl.T)  # X^+ (2 x N)
            fresh = rng.normal(0.0, sw * np.sqrt(d @ d), n)
            g = pinv.T @ (yl.T @ d) + fresh - xl @ (pinv @ fresh)
        d = masks[layer - 1] * g
        grads.append(d @ d / n)
    return np.array(stats), np.array(grads[::-1])


def mean_field_trajectory(f, sigma_w2, sigma_b2, depth, q1, c1):
    """(q^l, c^l) for l = 1..depth from the mean-field maps."""
    q, c, out = q1, c1, []
    for _ in range(depth):
        out.append((q, c))
        qab = kw.covariance_map(q, c, f, sigma_w2, sigma_b2)
        q = kw.q_map(q, f, sigma_w2, sigma_b2)
        c = min(1.0, qab / q)
    return np.array(out)


def finite_gain_samples(f, n, rng, samples=20000, chunk=500):
    """Samples of S = (1/N) sum of z^2 over the k = round(f N) largest of N i.i.d. N(0, 1).

    E[S] = G_N(f), the finite-k gain. With sigma_b^2 = 0 a layer maps q -> sigma_w^2 S q exactly
    (given the layer input, the pre-activations are i.i.d. normal), so at sigma_w^2 = 1/G the
    per-layer drift of ln q is E[ln(S/G)].
    """
    k = int(round(f * n))
    vals = []
    for _ in range(samples // chunk):
        top = np.partition(rng.standard_normal((chunk, n)), -k, axis=1)[:, -k:]
        vals.append(np.sum(top * top, axis=1) / n)
    return np.concatenate(vals)


COLUMNS = {"setting": "TEXT", "f": "REAL", "n": "INTEGER", "reps": "INTEGER", "depth": "INTEGER",
           "sigma_w2": "REAL", "sigma_b2": "REAL", "gain_dev": "REAL", "gain_dev_se": "REAL",
           "q_mf": "REAL", "q_sim": "REAL", "q_se": "REAL", "c_mf": "REAL", "c_sim": "REAL",
           "c_se": "REAL", "c_maxdev": "REAL", "chi1_mf": "REAL", "chi1_sim": "REAL",
           "chi1_se": "REAL", "deep_mf": "REAL", "deep_sim": "REAL", "deep_se": "REAL",
           "lnq_drift": "REAL", "lnq_drift_se": "REAL",
           "lnq_drift_pred": "REAL", "lnq_drift_pred_se": "REAL"}
KEY = ("setting", "f", "n", "reps", "depth")


def _rate(grads, i, j):
    """Per-layer factor (g_i / g_j)^(1/(j-i)) of the network-averaged squared gradients, with its
    delta-method standard error over networks."""
    g = grads.mean(axis=0)
    rate = (g[i] / g[j]) ** (1.0 / (j - i))
    lg = grads[:, i] / g[i] - grads[:, j] / g[j]
    return rate, rate * np.std(lg, ddof=1) / np.sqrt(len(grads)) / (j - i)


def study_point(setting, f, n, reps, depth, seed=0):
    """One table row: simulation statistics over ``reps`` networks against the mean field."""
    rng = np.random.default_rng([seed, int(round(f * 1000)), n, SETTINGS.index(setting)])
    sw2, sb2 = setting_params(setting, f)
    q1 = float(kw.q_star(f, sw2, sb2)) if setting == "fixed" else 1.0
    c1 = 0.9
    mf = mean_field_trajectory(f, sw2, sb2, depth, q1, c1)
    stats, grads = zip(*(simulate(f, n, sw2, sb2, depth, q1, c1, rng) for _ in range(reps)))
    stats, grads = np.array(stats), np.array(grads)  # reps x depth x 3, reps x depth
    qL = stats[:, -1, 0]
    cL = stats[:, -1, 2]
    c_mean = stats[:, :, 2].mean(axis=0)
    chi_sim, chi_se = _rate(grads, depth - 4, depth - 1)  # top 3 layers: the mean-field regime
    half = depth // 2
    deep_sim, deep_se = _rate(grads, 0, half)  # bottom half: finite-width correction dominates
    drift = np.diff(np.log(stats[:, :, 0]), axis=1).mean(axis=1)
    S = finite_gain_samples(f, n, rng)
    g_inf = float(kw.G(f))
    lnS = np.log(S / g_inf)
    return {"setting": setting, "f": f, "n": n, "reps": reps, "depth": depth, "sigma_w2": sw2,
            "sigma_b2": sb2, "gain_dev": S.mean() / g_inf - 1,
            "gain_dev_se": S.std(ddof=1) / np.sqrt(len(S)) / g_inf,
            "q_mf": mf[-1, 0], "q_sim": qL.mean(), "q_se": qL.std(ddof=1) / np.sqrt(reps),
            "c_mf": mf[-1, 1], "c_sim": cL.mean(), "c_se": cL.std(ddof=1) / np.sqrt(reps),
            "c_maxdev": float(np.max(np.abs(c_mean - mf[:, 1]))),
            "chi1_mf": float(kw.chi_1(f, sw2)), "chi1_sim": chi_sim, "chi1_se": chi_se,
            "deep_mf": max(float(kw.chi_1(f, sw2)), float(kw.chi_q(f, sw2)) ** 2),
            "deep_sim": deep_sim, "deep_se": deep_se,
            "lnq_drift": drift.mean(), "lnq_drift_se": drift.std(ddof=1) / np.sqrt(reps),
            "lnq_drift_pred": lnS.mean(), "lnq_drift_pred_se": lnS.std(ddof=1) / np.sqrt(len(lnS))}


def run(db=None, reps=300, depth=20, fs=FS, ns=NS, settings=SETTINGS, progress=True, *,
        engine=None, workers=None):
    """Compute every missing table row and return the rows of these sizes.

    Parameters
    ----------
    db : str or path-like, optional
        SQLite file (default ``results/kwinners_study.sqlite`` in the repository).
    reps, depth : int
        Networks per row and layers.
    fs, ns, settings : sequences
        Fractions of winners f, widths N and settings (``SETTINGS``); one row, and one
        ``experiments.runner`` task (weight ``reps``), per combination.
    progress : bool
        Progress bar over networks.
    engine, workers
        As in ``experiments.runner.run`` (default: ``$MEANFIELD_SCHEDULER``, else a LocalCluster).

    Returns
    -------
    list of dict
        The rows in plan order (settings, then f, then N), whichever engine computed them.

    References
    ----------
    docs/THEORY.md §7 (k-winners mean field).
    """
    from experiments import runner
    from experiments.store import Store

    db = Path(db) if db is not None else ROOT / "results" / "kwinners_study.sqlite"
    jobs = [(s, float(f), int(n)) for s in settings for f in fs for n in ns]
    tasks = [runner.Task(keys=[(s, f, n, reps, depth)], fn=study_point, args=(s, f, n, reps, depth),
                         weight=reps) for s, f, n in jobs]
    with Store(db, "kwinners_study", COLUMNS, KEY) as st:
        runner.run(tasks, st, engine=engine, workers=workers, progress=progress,
                   desc="k-winners finite width")
        return [st.rows(setting=s, f=f, n=n, reps=reps, depth=depth)[0] for s, f, n in jobs]


def format_table(rows) -> str:
    """Markdown tables of the deviations (simulation - mean field)."""
    out = []
    fixed = [r for r in rows if r["setting"] == "fixed"]
    if fixed:
        r0 = fixed[0]
        out.append(f"fixed point: sigma_w2 = 0.9/G(f), sigma_b2 = 0.05, start q = q*, c = 0.9, "
                   f"depth {r0['depth']}, {r0['reps']} networks per row (+- = 1 s.e.)\n")
        out.append("| f | N | G_N/G - 1 (%) | q_L sim/MF - 1 (%) | c_L MF | c_L sim - MF | "
                   "max_l abs(c sim - MF) | chi_1 MF | chi_1 sim/MF - 1 (%) (top 3 layers) | "
                   "max(chi_1, chi_q^2) | decay/layer sim (bottom half) |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in fixed:
            out.append(
                f"| {r['f']:g} | {r['n']} | {100 * r['gain_dev']:+.2f} +- {100 * r['gain_dev_se']:.2f} | "
                f"{100 * (r['q_sim'] / r['q_mf'] - 1):+.2f} +- {100 * r['q_se'] / r['q_mf']:.2f} | "
                f"{r['c_mf']:.4f} | {r['c_sim'] - r['c_mf']:+.4f} +- {r['c_se']:.4f} | "
                f"{r['c_maxdev']:.4f} | {r['chi1_mf']:.4f} | "
                f"{100 * (r['chi1_sim'] / r['chi1_mf'] - 1):+.2f} +- {100 * r['chi1_se'] / r['chi1_mf']:.2f} | "
                f"{r['deep_mf']:.4f} | {r['deep_sim']:.4f} +- {r['deep_se']:.4f} |")
    crit = [r for r in rows if r["setting"] == "critical"]
    if crit:
        out.append("\nforward critical: sigma_w2 = 1/G(f), sigma_b2 = 0 (mean field: ln q constant)\n")
        out.append("| f | N | d ln q / layer, sim | exact finite-N E ln(S/G) | N x drift (sim) | "
                   "chi_1 = f/G(f) |")
        out.append("|---|---|---|---|---|---|")
        for r in crit:
            out.append(f"| {r['f']:g} | {r['n']} | {r['lnq_drift']:+.5f} +- {r['lnq_drift_se']:.5f} | "
                       f"{r['lnq_drift_pred']:+.5f} +- {r['lnq_drift_pred_se']:.5f} | "
                       f"{r['n'] * r['lnq_drift']:+.2f} | {r['chi1_mf']:.4f} |")
    return "\n".join(out)


def build_parser() -> argparse.ArgumentParser:
    from experiments.runner import add_runner_arguments
    from meanfield.cli.args import creatable_path, integer, real

    ap = argparse.ArgumentParser(prog="python -m experiments.kwinners_study",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", type=creatable_path("file"),
                    default=str(ROOT / "results" / "kwinners_study.sqlite"))
    ap.add_argument("--reps", type=integer(2), default=300, help="networks per table row (>= 2)")
    ap.add_argument("--depth", type=integer(2), default=20, help="layers (>= 2)")
    ap.add_argument("--f", type=real(0, 1, lo_open=True, hi_open=True, what="f (fraction of winners)"),
                    nargs="+", default=list(FS), dest="fs", help="fractions of winners, in (0, 1)")
    ap.add_argument("--n", type=integer(1), nargs="+", default=list(NS), dest="ns",
                    help="widths N >= 1 with round(f N) >= 1 winners")
    ap.add_argument("--quick", action="store_true", help="20 networks, depth 8 (smoke test)")
    add_runner_arguments(ap)
    return ap


def parse_args(argv=None):
    """The validated flags (``reps`` and ``depth`` set by ``--quick``) with the runner's ``engine``
    keywords; every check happens here, before any simulation (bad input: an ``error:`` line
    naming the flag, exit 2)."""
    from experiments.runner import runner_from_args

    ap = build_parser()
    a = ap.parse_args(argv)
    if a.quick:
        a.reps, a.depth = 20, 8
    if not all(round(f * n) >= 1 for f in a.fs for n in a.ns):
        ap.error(f"argument --n: every width must give at least one winner, round(f N) >= 1, got "
                 f"N = {a.ns} for f = {a.fs}")
    a.engine = runner_from_args(a)
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    print(format_table(run(a.db, a.reps, a.depth, a.fs, a.ns, **a.engine)))
    return 0


if __name__ == "__main__":
    from meanfield.cli.args import run_main

    run_main(main)
