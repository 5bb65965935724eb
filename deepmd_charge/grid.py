"""Periodic grid geometry and training-point sampling.

Grid convention (VASP, GPAW, QE alike): point (i, j, k) of an (NX, NY, NZ) grid sits at fractional
position (i/NX, j/NY, k/NZ); arrays are indexed [i, j, k] and flattened in C order here.
"""

from __future__ import annotations

import numpy as np

from deepmd_charge.errors import InputError


def fractional_points(shape, indices=None) -> np.ndarray:
    """Fractional coordinates (M, 3) of the grid points with flat C-order `indices` (all if None)."""
    shape = tuple(int(n) for n in shape)
    if indices is None:
        indices = np.arange(int(np.prod(shape)))
    ijk = np.stack(np.unravel_index(np.asarray(indices), shape), axis=-1)
    return ijk / np.asarray(shape, dtype=np.float64)


def cartesian_points(cell, shape, indices=None) -> np.ndarray:
    """Cartesian coordinates (M, 3), Angstrom, of grid points in a cell of any shape."""
    return fractional_points(shape, indices) @ np.asarray(cell, dtype=np.float64).reshape(3, 3)


def _fft_friendly(n: int) -> int:
    """Smallest integer >= n whose prime factors are 2, 3 and 5 (what DFT codes use)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def shape_from_spacing(cell, spacing: float) -> tuple:
    """Grid shape with point spacing at most `spacing` Angstrom along every lattice vector."""
    if not np.isfinite(spacing) or spacing <= 0:
        raise InputError("--spacing", f"must be a positive length in Angstrom, got {spacing}")
    lengths = np.linalg.norm(np.asarray(cell).reshape(3, 3), axis=1)
    return tuple(_fft_friendly(max(1, int(np.ceil(length / spacing - 1e-9)))) for length in lengths)


def check_shape(shape) -> tuple:
    """Validate a user-given grid shape."""
    try:
        shape = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise InputError("--grid", f"needs three whole numbers, got {shape}") from None
    if len(shape) != 3 or min(shape) <= 0:
        raise InputError("--grid", f"needs three positive whole numbers NX NY NZ, got {shape}")
    return shape


def check_same_cell(cell, like_cell, shape, source, tol: float = 1e-3) -> None:
    """InputError unless the structure's `cell` is `like_cell` (the --like file's) within `tol` A.

    A grid copied from a file is meant for that file's cell: on another cell the same point counts
    give other spacings (and VASP could not restart from the result).
    """
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    like_cell = np.asarray(like_cell, dtype=np.float64).reshape(3, 3)
    diff = float(np.abs(cell - like_cell).max())
    if diff <= tol:
        return
    ours, theirs = np.linalg.norm(cell, axis=1), np.linalg.norm(like_cell, axis=1)
    spacing = ours / np.asarray(shape)
    raise InputError(
        source,
        f"has another cell than the structure (a, b, c = {' '.join(f'{x:.4f}' for x in theirs)} A against "
        f"{' '.join(f'{x:.4f}' for x in ours)} A; vectors differ by up to {diff:.3g} A): its "
        f"{'x'.join(map(str, shape))} grid would have spacings {' '.join(f'{x:.3f}' for x in spacing)} A here; "
        "use --grid NX NY NZ to keep the point counts, or --spacing",
    )


def sample_indices(rho: np.ndarray, count: int, rng: np.random.Generator, strategy: str = "uniform"):
    """Flat indices of `count` distinct grid points of `rho`.

    uniform: every point equally likely.
    weighted: probability proportional to |rho| + mean|rho|, so dense regions (bonds, cores) get
    about twice their uniform share while empty space is still sampled.
    """
    n = rho.size
    if count > n:
        raise InputError("--points", f"asks for {count} points but the grid has only {n}")
    if strategy == "uniform":
        return rng.choice(n, size=count, replace=False)
    if strategy == "weighted":
        w = np.abs(rho.ravel()) + np.abs(rho).mean()
        return rng.choice(n, size=count, replace=False, p=w / w.sum())
    raise InputError("--sampling", f"unknown strategy '{strategy}' (uniform or weighted)")
