"""Acceptance study for the two new noise layers: Gaussian noise and DropConnect against simulation.

    nice -n 10 python -m experiments.noise_study [--width 2000] [--depth 6] [--realisations 100]
        [--db results/noise_study.sqlite] [--serial [--threads 2] | --workers N | --scheduler tcp://HOST:PORT]

For tanh (sigma_w^2 = 1.4) and ReLU (sigma_w^2 = 1.0), sigma_b^2 = 0.1, keep rho = 0.7, the
exact infinite-width gradient theory (``meanfield.gradient_metrics``, sum-of-squares loss, networks
started at the fixed point) is compared layer by layer with finite-width simulation
(``meanfield.simulation``) for three layers of equal second moment mu_2 = 1/rho:

- ``dropconnect(keep=0.7)`` (docs/THEORY.md §11; dense engine, a masked N x N matrix per input);
- ``gaussian(sigma_eps2=(1 - rho)/rho)``, Gaussian dropout (§10; projected engine);
- ``dropout(keep=0.7)``, the reference the two are compared with (§4).

The three share q*, c*, chi_1, chi_c, chi_q and every GIA prediction; they differ only in the
single-input no-GIA source term (dropout a^2 PD / rho^3; DropConnect rho times that; Gaussian
mu_4 PD with mu_4 = (3 - 2 rho^2)/rho^2), so the per-layer g_aa below the output separates them.
The report gives, per case and layer (k = L - l from the output), theory (exact and GIA) against
the simulated mean +- its standard error, the relative deviation and z-score, and the DropConnect
minus dropout difference of g_aa in simulation (two-sample z) next to the theory's.

One simulation is one task of ``experiments.runner`` (Dask by default: the six simulations run in
parallel, one single-threaded worker per core; ``--serial`` in this process with ``--threads``
torch threads) and one row of the SQLite table ``noise_study`` (key: the full configuration), so an
interrupted run resumes with nothing lost but the simulations in progress, and a rerun only
reports. Cost: the DropConnect cases dominate (about 8 N^2 floats of work per layer and network:
550-580 s each at N = 2000, L = 6, R = 100 on 2 shared cores, against 2-4 s for a projected case).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import time
from pathlib import Path

import numpy as np

SB = 0.1
KEEP = 0.7
ACTS = (("tanh", 1.4), ("relu", 1.0))
DEFAULT_DB = Path("results") / "noise_study.sqlite"
COLUMNS = {"activation": "TEXT", "sigma_w2": "REAL", "sigma_b2": "REAL", "noise": "TEXT",
           "engine": "TEXT", "width": "INTEGER", "depth": "INTEGER", "realisations": "INTEGER",
           "seed": "INTEGER", "g_aa_mean": "TEXT", "g_aa_sem": "TEXT", "g_ab_mean": "TEXT",
           "g_ab_sem": "TEXT", "seconds": "REAL", "finished_at": "TEXT"}
KEY = ("activation", "sigma_w2", "sigma_b2", "noise", "engine", "width", "depth", "realisations",
       "seed")


def cases(width, depth, realisations, seed=0):
    """The study's simulations, one dict per row key."""
    from meanfield.noise import DropConnect, Dropout, GaussianNoise
    out = []
    for act, sw in ACTS:
        for nz in (DropConnect(keep=KEEP), GaussianNoise.matching_dropout(keep=KEEP), Dropout(keep=KEEP)):
            out.append(dict(activation=act, sigma_w2=sw, sigma_b2=SB, noise=nz.spec(),
                            engine="dense" if nz.acts_on == "weights" else "projected",
                            width=width, depth=depth, realisations=realisations, seed=seed))
    return out


def simulate(case):
    """Run one case; the row to store (per-layer g_aa pooled over the two inputs, and g_ab)."""
    from meanfield import noise_from_spec
    from meanfield.simulation import simulate_gradients
    t0 = time.perf_counter()
    res = simulate_gradients(case["activation"], case["sigma_w2"], case["sigma_b2"],
                             noise=noise_from_spec(case["noise"]), width=case["width"],
                             depth=case["depth"], realisations=case["realisations"],
                             engine=case["engine"], seed=case["seed"])
    gaa = (res.g_aa + res.g_bb) / 2  # inputs a and b are exchangeable: pool them per network
    r = res.realisations

    def enc(a):
        return json.dumps([float(v) for v in a])
    return dict(case, g_aa_mean=enc(gaa.mean(0)), g_aa_sem=enc(gaa.std(0, ddof=1) / np.sqrt(r)),
                g_ab_mean=enc(res.mean("g_ab")), g_ab_sem=enc(res.sem("g_ab")),
                seconds=time.perf_counter() - t0,
                finished_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))


def run(db, todo, progress=True, *, engine=None, workers=None) -> tuple[int, list[dict]]:
    """Simulate every case of ``todo`` not yet in ``db``, one ``experiments.runner`` task each.

    Parameters
    ----------
    db : str or path-like
        SQLite file.
    todo : list of dict
        Cases (``cases``).
    progress : bool
        Progress bar, weighted by the cost of each case.
    engine, workers
        As in ``experiments.runner.run`` (default: ``$MEANFIELD_SCHEDULER``, else a LocalCluster).

    Returns
    -------
    added : int
        Rows added.
    rows : list of dict
        The stored rows of ``todo``, in its order.
    """
    from .runner import Task
    from .runner import run as run_tasks
    from .store import Store
    # a dense (DropConnect) case costs about N/3 projected ones: weight the bar by that
    tasks = [Task(keys=[c], fn=simulate, args=(c,),
                  weight=max(1, c["width"] // 3) if c["engine"] == "dense" else 1) for c in todo]
    with Store(db, "noise_study", COLUMNS, KEY) as store:
        added = run_tasks(tasks, store, engine=engine, workers=workers, progress=progress,
                          desc=f"noise study: {len(todo)} simulations", unit="work")
        stored = {store.key_of(r): r for r in store.rows()}
        return added, [stored[store.key_of(c)] for c in todo]


def _arrays(row):
    return {k: np.array(json.loads(row[k])) for k in ("g_aa_mean", "g_aa_sem", "g_ab_mean", "g_ab_sem")}


def report(rows) -> list[str]:
    """The comparison tables (text lines) for the stored rows of :func:`cases`."""
    import meanfield as mf
    lines = []
    exact = {}   # (activation, noise spec) -> exact g_aa, reused by the difference tables
    for r in rows:
        nz = mf.noise_from_spec(r["noise"])
        kw = dict(depth=r["depth"], noise=nz)
        ex = mf.gradient_metrics(r["activation"], r["sigma_w2"], r["sigma_b2"], **kw)
        exact[(r["activation"], r["noise"])] = np.asarray(ex.g_aa)
        gi = mf.gradient_metrics(r["activation"], r["sigma_w2"], r["sigma_b2"], method="gia", **kw)
        a = _arrays(r)
        lines.append(f"## {r['activation']} sigma_w2={r['sigma_w2']:g} sigma_b2={r['sigma_b2']:g} "
                     f"{r['noise']} (keep={KEEP:g}, drop={1 - KEEP:g}): N={r['width']} "
                     f"R={r['realisations']} engine={r['engine']} ({r['seconds']:.0f} s)")
        lines.append(f"{'k':>2} | {'g_aa exact':>10} {'GIA':>9} {'sim':>10} {'+- s.e.':>8} "
                     f"{'rel':>7} {'z':>6} | {'g_ab exact':>10} {'sim':>10} {'+- s.e.':>8} "
                     f"{'rel':>7} {'z':>6}")
        for i in range(r["depth"] - 1, -1, -1):
            t_aa, t_ab = ex.g_aa[i], ex.g_ab[i]
            m_aa, s_aa, m_ab, s_ab = (a[k][i] for k in ("g_aa_mean", "g_aa_sem", "g_ab_mean", "g_ab_sem"))
            lines.append(f"{r['depth'] - 1 - i:>2} | {t_aa:10.5g} {gi.g_aa[i]:9.4g} {m_aa:10.5g} "
                         f"{s_aa:8.2g} {m_aa / t_aa - 1:+7.2%} {(m_aa - t_aa) / s_aa:+6.2f} | "
                         f"{t_ab:10.4g} {m_ab:10.4g} {s_ab:8.2g} {m_ab / t_ab - 1:+7.2%} "
                         f"{(m_ab - t_ab) / s_ab:+6.2f}")
        worst = np.max(np.abs(a["g_aa_mean"] / ex.g_aa - 1))
        lines.append(f"max |sim/theory - 1| of g_aa: {worst:.2%}; of g_ab: "
                     f"{np.max(np.abs(a['g_ab_mean'] / ex.g_ab - 1)):.2%} (its s.e. up to "
                     f"{np.max(a['g_ab_sem'] / np.abs(ex.g_ab)):.1%} of the theory)")
        lines.append("")
    for act, _ in ACTS:
        dc = next((r for r in rows if r["activation"] == act and r["noise"].startswith("dropconnect")), None)
        do = next((r for r in rows if r["activation"] == act and r["noise"].startswith("dropout")), None)
        if dc is None or do is None:
            continue
        x, y = _arrays(dc), _arrays(do)
        t_dc, t_do = exact[(act, dc["noise"])], exact[(act, do["noise"])]
        lines.append(f"## {act}: DropConnect minus dropout, single-input g_aa (same mu_2; theory "
                     f"differs only by the no-GIA source term)")
        lines.append(f"{'k':>2} | {'theory diff':>11} {'(rel)':>7} | {'sim diff':>10} "
                     f"{'+- s.e.':>8} {'(rel)':>7} {'z':>7}")
        for i in range(dc["depth"] - 1, -1, -1):
            d_t = t_dc[i] - t_do[i]
            d_s = x["g_aa_mean"][i] - y["g_aa_mean"][i]
            se = np.hypot(x["g_aa_sem"][i], y["g_aa_sem"][i])
            lines.append(f"{dc['depth'] - 1 - i:>2} | {d_t:11.4g} {d_t / t_do[i]:+7.2%} | "
                         f"{d_s:10.4g} {se:8.2g} {d_s / y['g_aa_mean'][i]:+7.2%} "
                         f"{d_s / se if se > 0 else float('nan'):+7.2f}")
        lines.append("")
    return lines


def build_parser() -> argparse.ArgumentParser:
    from meanfield.cli.args import creatable_path, integer, output_path

    from .runner import add_runner_arguments
    ap = argparse.ArgumentParser(prog="python -m experiments.noise_study",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=integer(2), default=2000, help="network width N >= 2")
    ap.add_argument("--depth", type=integer(2), default=6, help="layers L >= 2")
    ap.add_argument("--realisations", type=integer(2), default=100, help="networks per case R >= 2")
    ap.add_argument("--seed", type=integer(0), default=0, help="random seed >= 0")
    ap.add_argument("--db", type=creatable_path("file"), default=str(DEFAULT_DB),
                    help="SQLite results file")
    ap.add_argument("--out", type=output_path, help="also write the report to this text file")
    ap.add_argument("--threads", type=integer(1), default=2, help="torch CPU threads >= 1 of the "
                    "--serial engine (Dask workers are single-threaded)")
    ap.add_argument("--no-progress", action="store_true")
    add_runner_arguments(ap)
    return ap


def parse_args(argv=None) -> argparse.Namespace:
    """The validated flags with the runner's ``engine`` keywords; every check happens here, before
    torch is imported or a simulation starts (bad input: an ``error:`` line naming the flag,
    exit 2)."""
    from .runner import runner_from_args
    a = build_parser().parse_args(argv)
    a.engine = runner_from_args(a)
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.engine["engine"] == "serial":
        import torch
        torch.set_num_threads(a.threads)
    added, rows = run(a.db, cases(a.width, a.depth, a.realisations, a.seed),
                      progress=not a.no_progress, **a.engine)
    lines = [f"# {added} new simulations, {len(rows)} in {a.db}"] + report(rows)
    print("\n".join(lines))
    if a.out not in (None, "-"):   # '-': the report above is the output
        Path(a.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    from meanfield.cli.args import run_main

    run_main(main)
