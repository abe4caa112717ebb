"""One shared figure style: Okabe-Ito colour-blind-safe palette, font sizes, PNG + PDF output.

matplotlib is imported only inside ``experiments.figures`` and always with the Agg backend.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision
# deficiency. Black first so that single curves are neutral.
OKABE_ITO = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442")
PALETTE = OKABE_ITO[1:7] + (OKABE_ITO[0],)  # cycle without the low-contrast yellow
CMAP = "cividis"  # perceptually uniform and colour-blind safe, for heatmaps
GREY = "#7f7f7f"
MARKERS = ("o", "s", "^", "D", "v", "P", "X")

RC = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 7,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.prop_cycle": matplotlib.cycler(color=list(PALETTE)),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "lines.linewidth": 1.4,
    "lines.markersize": 3.5,
    "errorbar.capsize": 0,
    "legend.frameon": False,
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "pdf.fonttype": 42,  # embed TrueType: editable text in the PDF
    "mathtext.fontset": "dejavusans",
}


def apply():
    """Install the shared rcParams (idempotent)."""
    plt.rcParams.update(RC)


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def keep_label(keep: float) -> str:
    """Legend text stating both conventions: keep probability rho and drop probability 1 - rho."""
    return rf"$\rho$ = {keep:g} (drop {1 - keep:.2g})" if keep < 1 else r"$\rho$ = 1 (no dropout)"


def figure(nrows=1, ncols=1, *, width=7.0, height=None, **kw):
    """A constrained-layout figure of ``width`` inches (two-column paper width by default)."""
    apply()
    height = height if height is not None else 2.4 * nrows + 0.4
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), layout="constrained",
                             squeeze=False, **kw)
    return fig, axes


def savefig(fig, name: str, out) -> list[Path]:
    """Write ``out/name.png`` and ``out/name.pdf`` (tight bounding box) and close the figure."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        p = out / f"{name}.{ext}"
        fig.savefig(p, bbox_inches="tight", pad_inches=0.03)
        paths.append(p)
    plt.close(fig)
    return paths
