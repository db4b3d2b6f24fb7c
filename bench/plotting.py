"""Where the bench scripts draw: matplotlib without a display, files under bench/out/."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: benches run over ssh and in CI shells

from matplotlib import pyplot  # after the backend is chosen

OUT = Path(__file__).resolve().parent / "out"


def save(fig: pyplot.Figure, name: str) -> Path:
    """Write `fig` as bench/out/`name`, close it, and say where."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    fig.savefig(path, dpi=110, bbox_inches="tight")
    pyplot.close(fig)
    print(f"# plot: {path}")
    return path
