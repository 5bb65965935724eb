"""Pictures: parity plot of predicted vs DFT density, and slice maps (DFT | model | error)."""

from __future__ import annotations

import numpy as np

from deepmd_charge.io.files import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> None:
    fmt = str(path).rsplit(".", 1)[-1] if "." in str(path) else "png"
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format=fmt, dpi=130, bbox_inches="tight")


def parity_plot(path, series: dict, title: str = "") -> None:
    """`series` maps a label to (reference, predicted) arrays, e/A^3; hexbin density of points."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ref_all = np.concatenate([np.ravel(r) for r, _ in series.values()])
    pred_all = np.concatenate([np.ravel(p) for _, p in series.values()])
    lo, hi = min(ref_all.min(), pred_all.min()), max(ref_all.max(), pred_all.max())
    hb = ax.hexbin(ref_all, pred_all, gridsize=120, bins="log", mincnt=1, cmap="viridis", extent=(lo, hi, lo, hi))
    fig.colorbar(hb, ax=ax, label="grid points")
    ax.plot([lo, hi], [lo, hi], "r-", lw=0.8)
    mae = np.mean(np.abs(pred_all - ref_all))
    ax.set_xlabel(r"DFT density (e/$\AA^3$)")
    ax.set_ylabel(r"predicted density (e/$\AA^3$)")
    ax.set_title(title or f"{len(series)} input(s), MAE {mae:.2e} e/A^3")
    ax.set_aspect("equal")
    _save(fig, path)
    plt.close(fig)


def slice_plot(path, ref: np.ndarray, pred: np.ndarray, axis: int = 2, index: int | None = None, title: str = "", std=None) -> None:
    """Three panels of one grid plane: DFT, model, model - DFT (e/A^3); with a committee's
    deviation `std`, two more: |model - DFT| and the deviation, each on its own scale."""
    plt = _pyplot()
    index = ref.shape[axis] // 2 if index is None else index
    a, b = np.take(ref, index, axis=axis), np.take(pred, index, axis=axis)
    fig, axes = plt.subplots(1, 3 if std is None else 5, figsize=(13, 4) if std is None else (22, 4))
    vmin, vmax = min(a.min(), b.min()), max(a.max(), b.max())
    for ax, data, name in ((axes[0], a, "DFT"), (axes[1], b, "model")):
        im = ax.imshow(data.T, origin="lower", vmin=vmin, vmax=vmax, cmap="viridis")
        ax.set_title(name)
        fig.colorbar(im, ax=ax, shrink=0.8, label=r"e/$\AA^3$")
    err = b - a
    lim = np.abs(err).max() or 1.0
    im = axes[2].imshow(err.T, origin="lower", vmin=-lim, vmax=lim, cmap="RdBu_r")
    axes[2].set_title("model - DFT")
    fig.colorbar(im, ax=axes[2], shrink=0.8, label=r"e/$\AA^3$")
    if std is not None:
        # each on its own scale, clipped at its 99th percentile (a few points near nuclei would
        # otherwise hide the pattern): compare where, and read the size from the titles
        dev = np.take(std, index, axis=axis)
        for ax, data, name in ((axes[3], np.abs(err), "|model - DFT|"), (axes[4], dev, "committee deviation")):
            im = ax.imshow(data.T, origin="lower", vmin=0, vmax=np.percentile(data, 99) or 1.0, cmap="magma")
            ax.set_title(f"{name}\nmean {data.mean():.2e}, own scale")
            fig.colorbar(im, ax=ax, shrink=0.8, label=r"e/$\AA^3$", extend="max")
    fig.suptitle(title or f"grid plane {'xyz'[axis]} index {index}")
    _save(fig, path)
    plt.close(fig)
