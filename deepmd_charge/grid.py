"""Periodic grid geometry (grid points, periodic images, the near-nucleus radius) and training-point sampling.

Grid convention (VASP, GPAW, QE alike): point (i, j, k) of an (NX, NY, NZ) grid sits at fractional
position (i/NX, j/NY, k/NZ); arrays are indexed [i, j, k] and flattened in C order here.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from deepmd_charge.errors import InputError

#: Grid points closer than this (Angstrom) to a nucleus are not used for training: the descriptor's
#: 1/r diverges there (a point exactly on a nucleus gives NaN). Prediction evaluates such points on
#: a sphere of this radius instead (see predict.py).
CORE_RADIUS = 0.1


def wrap_into_cell(points, cell) -> np.ndarray:
    """Cartesian points moved by lattice vectors into the cell (fractional coordinates in [0, 1))."""
    frac = np.asarray(points) @ np.linalg.inv(cell)
    return (frac - np.floor(frac)) @ cell


def periodic_images(atoms, margin: float):
    """Positions and original indices of the atoms and all their images within `margin` of the cell."""
    cell = atoms.cell[:]
    # how many cells to repeat along each vector: the margin measured perpendicular to the faces
    normals = np.linalg.inv(cell).T
    reps = np.ceil(margin * np.linalg.norm(normals, axis=1)).astype(int)
    shifts = np.array(
        [
            (i, j, k)
            for i in range(-reps[0], reps[0] + 1)
            for j in range(-reps[1], reps[1] + 1)
            for k in range(-reps[2], reps[2] + 1)
        ]
    )
    frac = atoms.get_scaled_positions(wrap=True)
    all_frac = (frac[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
    index = np.tile(np.arange(len(atoms)), len(shifts))
    lo, hi = -margin * np.linalg.norm(normals, axis=1), 1 + margin * np.linalg.norm(normals, axis=1)
    keep = np.all((all_frac >= lo) & (all_frac < hi), axis=1)
    return all_frac[keep] @ cell, index[keep]


def pair_distances(cell, positions, rcut: float) -> np.ndarray:
    """Distances from every atom to every other atom or periodic image within rcut (each pair from both ends)."""
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    atoms = Atoms(numbers=np.ones(len(positions), dtype=int), positions=positions, cell=cell, pbc=True)
    return neighbor_list("d", atoms, rcut)


def near_nucleus_mask(atoms, points: np.ndarray, radius: float) -> np.ndarray:
    """True for points closer than `radius` to any atom (periodic images included)."""
    if radius <= 0 or len(points) == 0:
        return np.zeros(len(points), dtype=bool)
    pos, _ = periodic_images(atoms, radius)
    dist, _ = cKDTree(pos).query(points, k=1, distance_upper_bound=radius)
    return dist < radius


def grid_points_near_atoms(cell, shape, positions, radius: float, planes=None):
    """Grid points closer than `radius` to a nucleus, found from the nuclei instead of per point.

    Returns (flat C-order indices of the points in the grid, or in the slab of z-planes
    `planes` = (k0, k1) with flat index (i * ny + j) * (k1 - k0) + k - k0; the cartesian
    position, in the cell, of each such point; the position of its nearest nucleus, the periodic
    image next to the point). A point near two nuclei (closer than 2 * radius to each other) keeps
    the nearer one; one at `radius` to rounding error may go either way. Why: on a regular grid
    only a box of a few indices around each nucleus can be near it, so this costs per atom, not per
    point (10^6 points of Si64: Python time before the first batch 0.17-0.25 s with a KD-tree query
    of every point, 0.10-0.15 s with this, of a 2.2-2.5 s prediction; benchmarks/first_call.py).
    """
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    shape = np.asarray(shape, dtype=np.int64)
    k0, k1 = (0, int(shape[2])) if planes is None else planes
    frac_atoms = np.asarray(positions, dtype=np.float64).reshape(-1, 3) @ np.linalg.inv(cell)
    # a displacement of length r changes fractional coordinate a by at most r |inv[:, a]|
    reach = radius * np.linalg.norm(np.linalg.inv(cell), axis=0) * shape
    # about 2 million candidate points per pass (a few hundred MB at most, also for fine grids)
    atoms_per_pass = max(1, 2**21 // int(np.prod(np.floor(2 * reach) + 2)))
    found = []
    for a0 in range(0, len(frac_atoms), atoms_per_pass):
        f = frac_atoms[a0 : a0 + atoms_per_pass] * shape  # in grid steps
        lo = np.ceil(f - reach).astype(np.int64)
        width = np.floor(f + reach).astype(np.int64) - lo + 1
        box = np.stack(np.meshgrid(*[np.arange(int(w)) for w in width.max(axis=0)], indexing="ij"), axis=-1)
        idx = lo[:, None, :] + box.reshape(1, -1, 3)  # unwrapped grid indices around each atom
        d = (idx / shape - f[:, None, :] / shape) @ cell  # point minus nucleus
        dist = np.linalg.norm(d, axis=-1)
        atom, cand = np.nonzero(dist < radius)
        ijk = idx[atom, cand] % shape
        keep = (ijk[:, 2] >= k0) & (ijk[:, 2] < k1)
        found.append((ijk[keep], d[atom, cand][keep], dist[atom, cand][keep]))
    ijk = np.concatenate([x[0] for x in found]) if found else np.zeros((0, 3), dtype=np.int64)
    disp = np.concatenate([x[1] for x in found]) if found else np.zeros((0, 3))
    dist = np.concatenate([x[2] for x in found]) if found else np.zeros(0)
    flat = (ijk[:, 0] * shape[1] + ijk[:, 1]) * (k1 - k0) + ijk[:, 2] - k0
    order = np.lexsort((dist, flat))  # by point, the nearest nucleus first
    flat, ijk, disp = flat[order], ijk[order], disp[order]
    first = np.ones(len(flat), dtype=bool)
    first[1:] = flat[1:] != flat[:-1]
    flat, ijk, disp = flat[first], ijk[first], disp[first]
    points = (ijk / shape) @ cell
    return flat, points, points - disp


def electrons(rho, cell) -> float:
    """Integral of `rho` (e/A^3 on a uniform periodic grid) over the cell: mean(rho) x volume,
    the electron count for a total density (the moment in muB for a magnetisation)."""
    return float(np.mean(rho) * cell_volume(cell))


def electrons_from_sum(total: float, npoints: int, cell) -> float:
    """The same integral from a running sum of rho over all `npoints` grid points (streamed slabs)."""
    return float(total / npoints * cell_volume(cell))


def cell_volume(cell) -> float:
    """|det(cell)|, A^3."""
    return float(abs(np.linalg.det(np.asarray(cell, dtype=np.float64).reshape(3, 3))))


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
        raise InputError("spacing", f"must be a positive length in Angstrom, got {spacing}")
    lengths = np.linalg.norm(np.asarray(cell).reshape(3, 3), axis=1)
    return tuple(_fft_friendly(max(1, int(np.ceil(length / spacing - 1e-9)))) for length in lengths)


def check_shape(shape) -> tuple:
    """Validate a user-given grid shape."""
    try:
        shape = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise InputError("grid shape", f"needs three whole numbers, got {shape}") from None
    if len(shape) != 3 or min(shape) <= 0:
        raise InputError("grid shape", f"needs three positive whole numbers NX NY NZ, got {shape}")
    return shape


#: check_same_cell's advice; dp-charge (cli.py) says it with its options
KEEP_COUNTS_HINT = "give the grid shape NX NY NZ to keep the point counts, or a spacing"


def check_same_cell(cell, like_cell, shape, source, tol: float = 1e-3) -> None:
    """InputError unless the structure's `cell` is `like_cell` (the reference file's) within `tol` A.

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
        + KEEP_COUNTS_HINT,
    )


def sample_indices(rho: np.ndarray, count: int, rng: np.random.Generator, strategy: str = "uniform"):
    """Flat indices of `count` distinct grid points of `rho`.

    uniform: every point equally likely.
    weighted: probability proportional to |rho| + mean|rho|, so dense regions (bonds, cores) get
    about twice their uniform share while empty space is still sampled.
    """
    n = rho.size
    if count > n:
        raise InputError("points", f"asks for {count} points but the grid has only {n}")
    if strategy == "uniform":
        return rng.choice(n, size=count, replace=False)
    if strategy == "weighted":
        w = np.abs(rho.ravel()) + np.abs(rho).mean()
        return rng.choice(n, size=count, replace=False, p=w / w.sum())
    raise InputError("sampling", f"unknown strategy '{strategy}' (uniform or weighted)")
