"""Pictures: parity plot, slice maps (DFT | model | error) and planar averages along an axis.

Every function takes densities in e/A^3 and writes a file whose format follows its extension
(png, pdf, svg). Lengths on the axes are in Angstrom.
"""

from __future__ import annotations

import os

import numpy as np

from deepmd_charge.errors import InputError
from deepmd_charge.io.files import atomic_write

AXES = "abc"
#: error maps saturate at this percentile of |error| (one pixel on a nucleus would else set the scale)
ERROR_PERCENTILE = 99.5
#: points drawn per input in a parity plot (a random subset of larger inputs; all enter the numbers)
PARITY_POINTS = 20_000
#: atoms closer than this (A) to a slice plane are drawn on it
ATOM_SHOW_DISTANCE = 1.0
#: slices of smaller cells are drawn repeated up to this size (A)
MIN_SIDE = 4.0
_UNIT = r"e/$\mathrm{\AA}^3$"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> None:
    fmt = str(path).rsplit(".", 1)[-1].lower() if "." in os.path.basename(str(path)) else "png"
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format=fmt, dpi=130, bbox_inches="tight")


def short_names(names) -> list:
    """Labels for a legend: the shortest path tails that tell the inputs apart
    (../dft/a/CHGCAR.gz, /tmp/b/CHGCAR.gz -> a/CHGCAR.gz, b/CHGCAR.gz)."""
    parts = [str(n).replace("\\", "/").rstrip("/").split("/") for n in names]
    for k in range(1, max(len(p) for p in parts) + 1):
        short = ["/".join(p[-k:]) for p in parts]
        if len(set(short)) == len(short) and (k > 1 or len(parts) > 1 or len(parts[0]) == 1):
            return short
    return [str(n) for n in names]


def axis_index(axis) -> int:
    """'a'/'b'/'c' (or 'x'/'y'/'z', 0/1/2) -> 0/1/2."""
    text = str(axis).strip().lower()
    lookup = {"a": 0, "b": 1, "c": 2, "x": 0, "y": 1, "z": 2, "0": 0, "1": 1, "2": 2}
    if text not in lookup:
        raise InputError("--axis", f"should be a, b or c (the lattice vector), got '{axis}'")
    return lookup[text]


# ---- parity -------------------------------------------------------------------------------------
def parity_plot(path, series: dict, title: str = "", log: bool = False, unit: str = _UNIT) -> None:
    """Predicted against reference density, one colour per input, with a legend.

    `series` maps a label to (reference, predicted) arrays. Inputs with more than PARITY_POINTS
    points are drawn as a random subset (the same each run); the legend's MAE and NMAE use all.
    `log`: symmetric-log axes, linear within 1e-4 of the largest |density| (PAW densities go
    negative near nuclei), so that the many small values of vacuum and molecules spread out.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 6))
    rng = np.random.default_rng(0)
    labels = short_names(list(series))
    colours = plt.get_cmap("tab10")
    lo, hi, biggest = np.inf, -np.inf, 0.0
    total_abs_err = total_abs_ref = 0.0
    n_all = 0
    xs, ys, cs = [], [], []
    for k, ((ref, pred), label) in enumerate(zip(series.values(), labels)):
        ref, pred = np.ravel(ref), np.ravel(pred)
        err = np.abs(pred - ref)
        total_abs_err += err.sum()
        total_abs_ref += np.abs(ref).sum()
        n_all += ref.size
        pick = rng.choice(ref.size, PARITY_POINTS, replace=False) if ref.size > PARITY_POINTS else np.arange(ref.size)
        nmae = err.sum() / max(np.abs(ref).sum(), 1e-300)
        xs.append(ref[pick])
        ys.append(pred[pick])
        cs.append(np.full(len(pick), k))
        # legend entry (the points themselves are drawn below, all inputs mixed)
        ax.scatter([], [], s=12, color=colours(k % 10), label=f"{label}: MAE {err.mean():.2e}, NMAE {100 * nmae:.2f}%")
        lo, hi = min(lo, ref.min(), pred.min()), max(hi, ref.max(), pred.max())
        biggest = max(biggest, np.abs(ref).max(), np.abs(pred).max())
    # drawn in a random order of all inputs' points, so that the last input does not cover the others
    order = rng.permutation(sum(len(x) for x in xs))
    x, y, c = np.concatenate(xs)[order], np.concatenate(ys)[order], np.concatenate(cs)[order]
    ax.scatter(x, y, s=3, alpha=0.4, c=[colours(k % 10) for k in c], linewidths=0, rasterized=True)
    if log:  # a factor of 1.5 beyond the extremes; 0 as the lower end when nothing is negative
        lo, hi = (1.5 * lo if lo < 0 else 0.0), (1.5 * hi if hi > 0 else 0.0)
    else:
        pad = 0.03 * (hi - lo)
        lo, hi = lo - pad, hi + pad
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="prediction = DFT")
    if log:
        linthresh = max(biggest * 1e-4, 1e-12)
        ax.set_xscale("symlog", linthresh=linthresh)
        ax.set_yscale("symlog", linthresh=linthresh)
        ax.text(
            0.98,
            0.02,
            f"symmetric log axes: linear within ±{linthresh:.0e}",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=8,
            color="0.3",
        )
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal" if not log else "auto")
    ax.set_xlabel(f"DFT density ({unit})")
    ax.set_ylabel(f"predicted density ({unit})")
    shown = "" if n_all <= PARITY_POINTS * len(series) else f"; up to {PARITY_POINTS:,} random points drawn per input"
    ax.set_title(
        title
        or f"{len(series)} input(s), {n_all:,} grid points, NMAE {100 * total_abs_err / max(total_abs_ref, 1e-300):.2f}%{shown}",
        fontsize=9,
    )
    ax.legend(loc="upper left", fontsize=8, frameon=True)
    _save(fig, path)
    plt.close(fig)


# ---- slices -------------------------------------------------------------------------------------
def plane_geometry(cell, axis: int):
    """In-plane 2D coordinates of the two other lattice vectors and the plane normal's length scale.

    Returns (u2d, v2d, height): u and v as 2-vectors (A) in an orthonormal frame of the plane (u
    along x), and the distance between the origin plane and the opposite face (A).
    """
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    i, j = [k for k in range(3) if k != axis]
    u, v = cell[i], cell[j]
    e1 = u / np.linalg.norm(u)
    normal = np.cross(u, v)
    normal /= np.linalg.norm(normal)
    e2 = np.cross(normal, e1)
    height = abs(float(np.dot(cell[axis], normal)))
    return np.array([u @ e1, u @ e2]), np.array([v @ e1, v @ e2]), height, (e1, e2, normal)


def plane_index(shape, cell, axis: int, position: float | None) -> tuple:
    """(grid index, its height in A) of the grid plane nearest `position` A along the plane normal.

    Without `position`: the middle of the cell.
    """
    n = shape[axis]
    _, _, height, _ = plane_geometry(cell, axis)
    if position is None:
        index = n // 2
    else:
        if not np.isfinite(position) or position < 0 or position > height:
            raise InputError(
                "--slice-at", f"must lie in the cell: 0 to {height:.3f} A along {AXES[axis]}, got {position}"
            )
        index = int(round(position / height * n)) % n
    return index, index / n * height


def slice_plot(
    path,
    ref: np.ndarray,
    pred: np.ndarray,
    atoms=None,
    axis: int = 2,
    position: float | None = None,
    title: str = "",
    percentile: float = ERROR_PERCENTILE,
    std=None,
    std_label: str = "committee deviation",
) -> dict:
    """Three maps of one grid plane: DFT, model, model - DFT (e/A^3), in Angstrom.

    The plane is the grid plane spanned by the two lattice vectors other than `axis`, nearest
    `position` A (measured along the plane normal from the origin; default: the middle). Atoms
    within ATOM_SHOW_DISTANCE of the plane are drawn (larger and darker the nearer). The error
    colours saturate at the `percentile` of |error| in the plane (the colour bar says so).
    With a committee's per-point deviation `std`, two more maps: |model - DFT| and the deviation,
    each on its own scale (clipped at its 99th percentile), to compare where they are large.
    Returns {"index", "position", "error_limit", "max_abs_error"}.
    """
    plt = _pyplot()
    shape = ref.shape
    cell = np.asarray(atoms.cell[:]) if atoms is not None else np.diag(shape).astype(float)
    index, height = plane_index(shape, cell, axis, position)
    a, b = np.take(ref, index, axis=axis), np.take(pred, index, axis=axis)
    err = b - a
    extra = [] if std is None else [np.abs(err), np.take(std, index, axis=axis)]
    u2, v2, _, (e1, e2, normal) = plane_geometry(cell, axis)
    in_plane = [k for k in range(3) if k != axis]
    # small cells are drawn repeated (at least MIN_SIDE A a side) so that the pattern shows
    reps = [int(min(4, np.ceil(MIN_SIDE / max(np.linalg.norm(w), 1e-9)))) for w in (u2, v2)]
    a, b, err = (np.tile(x, reps) for x in (a, b, err))
    extra = [np.tile(x, reps) for x in extra]
    n_u, n_v = a.shape[0] // reps[0], a.shape[1] // reps[1]
    # corners of every pixel (a point's cell of the grid: centred on the grid point)
    fu = (np.arange(n_u * reps[0] + 1) - 0.5) / n_u
    fv = (np.arange(n_v * reps[1] + 1) - 0.5) / n_v
    FU, FV = np.meshgrid(fu, fv, indexing="ij")
    X = FU * u2[0] + FV * v2[0]
    Y = FU * u2[1] + FV * v2[1]

    vmin, vmax = min(a.min(), b.min()), max(a.max(), b.max())
    lim = float(np.percentile(np.abs(err), percentile)) or float(np.abs(err).max()) or 1.0
    max_err = float(np.abs(err).max())
    width, tall = X.max() - X.min(), max(Y.max() - Y.min(), 1e-9)
    panel = 4.2
    npanel = 3 + len(extra)
    fig, axes = plt.subplots(
        1, npanel, figsize=(npanel * panel + 1.5, panel * tall / width + 1.3), constrained_layout=True
    )
    panels = [
        (a, "DFT", "viridis", vmin, vmax, "neither"),
        (b, "model", "viridis", vmin, vmax, "neither"),
        (err, "model - DFT", "RdBu_r", -lim, lim, "both" if max_err > lim else "neither"),
    ]
    for data, name in zip(extra, ("|model - DFT|", std_label)):
        panels.append(
            (
                data,
                f"{name}\nmean {data.mean():.2e}, own scale",
                "magma",
                0.0,
                float(np.percentile(data, 99)) or 1.0,
                "max",
            )
        )
    sites = _atoms_near_plane(atoms, axis, index / shape[axis], e1, e2, normal, reps) if atoms is not None else []
    for ax, (data, name, cmap, lo, hi, extend) in zip(axes, panels):
        im = ax.pcolormesh(X, Y, data, cmap=cmap, vmin=lo, vmax=hi, shading="flat", rasterized=True)
        for x, y, symbol, dist in sites:
            near = 1 - dist / ATOM_SHOW_DISTANCE
            ax.plot(x, y, "o", ms=4 + 6 * near, mfc="none", mec="k", mew=0.6 + 1.2 * near, alpha=0.4 + 0.6 * near)
            ax.text(
                x + 0.12,
                y + 0.12,
                symbol,
                fontsize=7,
                ha="left",
                va="bottom",
                clip_on=True,
                bbox={"boxstyle": "round,pad=0.1", "fc": "white", "alpha": 0.7, "lw": 0},
            )
        ax.set_xlim(X.min(), X.max())
        ax.set_ylim(Y.min(), Y.max())
        ax.set_aspect("equal")
        ax.set_xlabel(rf"along {AXES[in_plane[0]]} ($\mathrm{{\AA}}$)")
        ax.set_title(name)
        bar = fig.colorbar(im, ax=ax, shrink=0.85, extend=extend, pad=0.02)
        bar.set_label(
            _UNIT if name != "model - DFT" else f"{_UNIT}  (|err| > {percentile:g}th percentile: saturated)", fontsize=8
        )
    square = abs(np.dot(u2, v2)) < 1e-6 * np.linalg.norm(u2) * np.linalg.norm(v2)
    axes[0].set_ylabel(
        rf"along {AXES[in_plane[1]]} ($\mathrm{{\AA}}$)"
        if square
        else rf"normal to {AXES[in_plane[0]]} in the plane ($\mathrm{{\AA}}$)"
    )
    others = "".join(AXES[k] for k in range(3) if k != axis)
    head = (
        f"plane {others} (normal to {AXES[axis]}) at {height:.3f} Å along {AXES[axis]} "
        f"(grid plane {index} of {shape[axis]}{'; drawn repeated' if max(reps) > 1 else ''}); max |error| "
        f"{max_err:.3g} e/Å³, colour limit ±{lim:.3g}"
    )
    fig.suptitle(f"{title}\n{head}" if title else head, fontsize=9)
    _save(fig, path)
    plt.close(fig)
    return {"index": index, "position": height, "error_limit": lim, "max_abs_error": max_err}


def _atoms_near_plane(atoms, axis, frac, e1, e2, normal, reps=(1, 1)):
    """(x, y, symbol, distance) of atoms and periodic images within ATOM_SHOW_DISTANCE of the plane,
    inside (or on the edge of) the drawn face, `reps` cells along each in-plane vector."""
    cell = np.asarray(atoms.cell[:])
    scaled = atoms.get_scaled_positions(wrap=True)
    sites = []
    origin = frac * cell[axis]
    in_plane = [k for k in range(3) if k != axis]
    margin = 0.08  # images just outside the drawn face still show their circle's edge
    for shift_n in (-1, 0, 1):
        for s_u in range(-1, reps[0] + 1):
            for s_v in range(-1, reps[1] + 1):
                shift = np.zeros(3)
                shift[axis], shift[in_plane[0]], shift[in_plane[1]] = shift_n, s_u, s_v
                for f, symbol in zip(scaled + shift, atoms.get_chemical_symbols()):
                    if not all(-margin <= f[k] <= r + margin for k, r in zip(in_plane, reps)):
                        continue
                    r = f @ cell - origin
                    dist = abs(float(r @ normal))
                    if dist < ATOM_SHOW_DISTANCE:
                        sites.append((float(r @ e1), float(r @ e2), symbol, dist))
    return sites


# ---- planar average -----------------------------------------------------------------------------
def planar_average(rho: np.ndarray, cell, axis: int):
    """(heights in A along the plane normal, mean density of each grid plane normal to `axis`)."""
    rho = np.asarray(rho)
    _, _, height, _ = plane_geometry(cell, axis)
    others = tuple(k for k in range(3) if k != axis)
    n = rho.shape[axis]
    return np.arange(n) / n * height, rho.mean(axis=others)


def planar_average_plot(path, ref, pred, atoms, axis: int = 2, title: str = "", dat: bool = True) -> str | None:
    """Planar averages of DFT and model along `axis` (upper panel) and their difference (lower).

    The standard picture for slabs and interfaces. Atoms' heights are marked. With `dat`, the
    numbers go to a text file next to the picture (same name, .dat): height (A), DFT, model,
    model - DFT (e/A^3). Returns the .dat path.
    """
    plt = _pyplot()
    cell = np.asarray(atoms.cell[:])
    z, avg_ref = planar_average(ref, cell, axis)
    _, avg_pred = planar_average(pred, cell, axis)
    _, _, height, _ = plane_geometry(cell, axis)
    # drawn closed over the whole period (the plane at `height` is the one at 0)
    zc, rc, pc = np.append(z, height), np.append(avg_ref, avg_ref[0]), np.append(avg_pred, avg_pred[0])
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(7, 5.2), sharex=True, gridspec_kw={"height_ratios": [2, 1]}, constrained_layout=True
    )
    top.plot(zc, rc, "k-", lw=1.4, label="DFT")
    top.plot(zc, pc, "--", color="tab:orange", lw=1.4, label="model")
    bottom.plot(zc, pc - rc, "-", color="tab:red", lw=1.2)
    bottom.axhline(0, color="0.5", lw=0.6)
    heights = (atoms.get_scaled_positions(wrap=True)[:, axis] % 1.0) * height
    for h in heights:
        top.axvline(h, color="0.85", lw=0.6, zorder=0)
    # triangles on the upper edge mark the atoms' heights (also those at 0, on the frame)
    top.plot(
        heights,
        np.ones_like(heights),
        "v",
        ms=5,
        color="tab:blue",
        transform=top.get_xaxis_transform(),
        clip_on=False,
        label="atom heights",
    )
    top.set_ylabel(f"planar average ({_UNIT})")
    bottom.set_ylabel(f"model - DFT ({_UNIT})")
    bottom.set_xlabel(
        rf"height along {AXES[axis]} ($\mathrm{{\AA}}$, normal to the {''.join(AXES[k] for k in range(3) if k != axis)} plane)"
    )
    bottom.set_xlim(0, height)
    top.legend(fontsize=8)
    mae = np.abs(avg_pred - avg_ref).mean()
    head = f"planar average along {AXES[axis]}; mean |model - DFT| of the averages {mae:.2e} e/Å³"
    top.set_title(f"{title}\n{head}" if title else head, fontsize=9)
    _save(fig, path)
    plt.close(fig)
    if not dat:
        return None
    dat_path = os.path.splitext(str(path))[0] + ".dat"
    from deepmd_charge.io.files import write_text

    lines = [
        f"# planar average along {AXES[axis]} (normal to the other two lattice vectors); {title}",
        "# height(A)  DFT(e/A^3)  model(e/A^3)  model-DFT(e/A^3)",
    ]
    lines += [f"{h:10.5f} {r: .8e} {p: .8e} {p - r: .8e}" for h, r, p in zip(z, avg_ref, avg_pred)]
    write_text(dat_path, "\n".join(lines) + "\n")
    return dat_path
