"""DeepCharge: a frozen charge model -> density at any points or on any grid.

Why not DeePMD-kit's DeepDOS/DeepPot.eval: with all grid points as atoms of one frame its CPU
neighbour list is brute force over every atom, ghosts included (measured while this package was
designed: 8.7k points/s at 500 ghosts per call, 460 points/s at 50,000; benchmarks/predict_speed.py
times stock DeePMD-kit against this module, docs/benchmarks.md section 3). Here the grid is cut into small spatial bins; each bin's
points are the local atoms of one call and only the real atoms (periodic images included) within
rcut + the bin's half-diagonal are passed as their candidate neighbours, in DeePMD-kit's own
"neighbour list in the mesh tensor" mode. The same C++ environment op then keeps the true
neighbours within rcut. Cost is linear in the number of points and independent of system size.

By default the per-neighbour networks (embedding, radial net, radial basis) are evaluated from
interpolation tables by a small kernel of ours (tf/tabulate.py, tf/table_sum.cc): the same
density to ~1e-12 in float64, several times faster (docs/benchmarks.md section 3).

This module holds the geometry and the batching; the TensorFlow side (graph, session, one call
per batch) is tf/session.py.
"""

from __future__ import annotations

import gc
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from ase import Atoms
from scipy.spatial import cKDTree

from deepmd_charge.errors import InputError
from deepmd_charge.grid import (
    CORE_RADIUS,
    check_shape,
    electrons,
    electrons_from_sum,
    grid_points_near_atoms,
    periodic_images,
    shape_from_spacing,
)

DEFAULT_SPACING = 0.1
BIN_LENGTH = 1.2  # Angstrom; smaller bins = fewer wasted candidates, more Python calls
# Coarse grids get larger bins: with a few points per bin the per-bin Python work dominated
# (Si10648, 100^3 grid, 8 points per 1.2 A bin: 82k points/s against 132k for Si64; section 3)
MIN_POINTS_PER_BIN = 64
#: grid points computed (and written) at a time by iter_slabs: the memory a prediction holds
SLAB_POINTS = 2**20
CHUNK_POINTS = 8192  # points per TensorFlow call (in flight at once), plain graph
# The tabulated graph holds ~10 KB per point instead of the plain graph's per-slot embeddings:
# twice the points per call saved 7 % of the time (Si64, 100^3 grid, float32 and float64)
CHUNK_POINTS_TABULATED = 16384


class _GridPointBar:
    """A progress bar counted in grid points while more points (the core spheres) are evaluated:
    its total stays fixed and it ends at exactly the grid points of the call."""

    def __init__(self, bar, scale: float):
        self.bar, self.scale, self.done, self.shown = bar, scale, 0.0, 0

    def update(self, n: int) -> None:
        self.done += n * self.scale
        step = int(round(self.done)) - self.shown
        self.shown += step
        self.bar.update(step)


class DeepCharge:
    """A frozen deepmd-charge model (from ``dp freeze``).

    >>> dc = DeepCharge("model.pb")
    >>> rho = dc.predict(atoms, grid=(48, 48, 48))       # e/A^3, rho[i,j,k] at (i/48, j/48, k/48)
    >>> rho_pts = dc.predict_points(atoms, points)        # points: (M, 3) cartesian Angstrom
    >>> dc.close()                                        # or: with DeepCharge("model.pb") as dc: ...
    """

    def __init__(self, model_file, threads: int | None = None, tabulate: bool = True):
        from deepmd_charge.tf.session import ChargeSession

        path = Path(model_file)
        if not path.is_file():
            raise InputError(path, "no such model file" if not path.exists() else "is not a file")
        self.model_file = str(path)
        threads = threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        # chunks in flight at once: many of the graph's ops use one core, so two concurrent calls
        # keep both cores busy (docs/large-systems.md, Threads: +6 % float32, +3 % float64, plain graph)
        self.concurrent_calls = max(1, min(2, threads or (os.cpu_count() or 1)))
        #: the TensorFlow side (tf/session.py): graph, session, one call per batch
        self.session = ChargeSession(path, threads=threads, tabulate=tabulate)
        self.chunk_points = CHUNK_POINTS_TABULATED if self.tabulated else CHUNK_POINTS

    # ---- the model (tf/session.py) -------------------------------------------------------------
    @property
    def type_map(self) -> list:
        """The model's types: its elements, then the ghost (grid point) type."""
        return self.session.type_map

    @property
    def ghost_type(self) -> int:
        return self.session.ghost_type

    @property
    def rcut(self) -> float:
        """Cutoff radius of the descriptor, Angstrom."""
        return self.session.rcut

    @property
    def precision(self):
        """numpy dtype of the model's inputs (float64 or float32)."""
        return self.session.precision

    @property
    def tabulated(self) -> bool:
        """True when the per-neighbour networks run from interpolation tables (tf/tabulate.py)."""
        return self.session.tabulated

    @property
    def why_not_tabulated(self) -> str:
        return self.session.why_not_tabulated

    def close(self) -> None:
        """Release the TensorFlow session; predictions after this raise RuntimeError."""
        self.session.close()

    def __enter__(self) -> DeepCharge:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def elements(self) -> list:
        """Elements the model knows (type_map without the ghost type)."""
        return self.type_map[:-1]

    def _types_of(self, atoms: Atoms, source="structure") -> np.ndarray:
        symbols = atoms.get_chemical_symbols()
        unknown = sorted(set(symbols) - set(self.elements))
        if unknown:
            raise InputError(
                source, f"has element(s) {unknown} that the model does not know (it knows {self.elements})"
            )
        return np.array([self.type_map.index(s) for s in symbols])

    # ---- public API --------------------------------------------------------------------------
    def grid_shape(self, atoms: Atoms, grid=None, spacing: float | None = None) -> tuple:
        """The grid asked for: `grid` if given, else spacing-based (default 0.1 A)."""
        if grid is not None:
            return check_shape(grid)
        return shape_from_spacing(np.asarray(atoms.cell[:]), DEFAULT_SPACING if spacing is None else spacing)

    def predict(self, atoms: Atoms, grid=None, spacing: float | None = None, progress: bool = False) -> np.ndarray:
        """Density (e/A^3) on the periodic grid `grid` = (nx, ny, nz) of the atoms' cell.

        Without `grid`, the grid has at most `spacing` (default 0.1 A) between points.
        """
        shape = self.grid_shape(atoms, grid, spacing)
        return assemble_slabs(self.iter_slabs(atoms, shape, progress=progress), shape)

    def iter_slabs(self, atoms: Atoms, shape, slab_points: int = SLAB_POINTS, progress: bool = False, slabs=None):
        """Yield (k0, k1, rho[:, :, k0:k1]) for runs of z-planes of the grid, in order.

        A CHGCAR stores x fastest, so consecutive z-planes are consecutive stretches of the
        file: a writer can stream them and never hold the whole grid. `slabs` restricts the
        work to those slab numbers (MPI ranks take every n-th one).
        """
        shape = check_shape(shape)
        ctx = self._context(atoms, int(np.prod(shape)))
        bounds = slab_bounds(shape, slab_points)
        bar = None
        if progress:
            from tqdm import tqdm

            total = (
                sum(k1 - k0 for i, (k0, k1) in enumerate(bounds) if slabs is None or i in slabs) * shape[0] * shape[1]
            )
            bar = tqdm(total=total, unit="pt", unit_scale=True, desc="predict", mininterval=0.5, smoothing=0.1)
        cell = ctx.cell
        ij = np.stack(np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij"), axis=-1).reshape(-1, 2)
        for n, (k0, k1) in enumerate(bounds):
            if slabs is not None and n not in slabs:
                continue
            ks = np.arange(k0, k1)
            frac = np.concatenate(
                [np.repeat(ij, len(ks), axis=0) / shape[:2], np.tile(ks, len(ij))[:, None] / shape[2]], axis=1
            )
            hit, _, centers = grid_points_near_atoms(cell, shape, atoms.positions, CORE_RADIUS, planes=(k0, k1))
            rho = self._predict_wrapped(ctx, _to(frac, cell), bar, core=(hit, centers))
            yield k0, k1, rho.reshape(shape[0], shape[1], len(ks))
        if bar:
            bar.close()

    def predict_points(self, atoms: Atoms, points, progress: bool = False) -> np.ndarray:
        """Density (e/A^3) at cartesian `points` (M, 3), Angstrom, in a periodic cell."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        ctx = self._context(atoms, len(points))
        frac = _to(points, ctx.inv)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(points), unit="pt", unit_scale=True, desc="predict", mininterval=0.5)
        rho = self._predict_wrapped(ctx, _to(frac - np.floor(frac), ctx.cell), bar)  # the density is periodic
        if bar:
            bar.close()
        return rho

    def check_structure(self, atoms: Atoms, source="structure") -> np.ndarray:
        """Model type indices of the atoms; InputError for unknown elements or a missing cell."""
        types = self._types_of(atoms, source)
        if abs(np.linalg.det(atoms.cell[:])) < 1e-6:
            raise InputError(source, "has no periodic cell; put molecules or slabs in a box with vacuum")
        if not np.all(atoms.pbc):
            raise InputError(source, "is not periodic in all directions; put molecules or slabs in a box with vacuum")
        return types

    def _context(self, atoms: Atoms, npoints: int) -> _Structure:
        types = self.check_structure(atoms)
        per_point = abs(np.linalg.det(atoms.cell[:])) / max(npoints, 1)  # A^3 per point
        bin_length = max(
            BIN_LENGTH, min((MIN_POINTS_PER_BIN * per_point) ** (1 / 3), 3.0)
        )  # 3 A: candidates stay < 3.4x
        return _Structure(atoms, types, self.rcut, bin_length)

    def _predict_wrapped(self, ctx, points, bar=None, core=None):
        """Points inside the cell; near-nucleus points replaced by their sphere average. `core`:
        (indices of the points near a nucleus, those nuclei's positions) when already known."""
        points, sphere_of = self._substitute_core_points(ctx, points, core)
        if bar is not None and sphere_of is not None:
            bar = _GridPointBar(bar, sphere_of[0] / len(points))  # the sphere points are evaluated too
        rho = self._evaluate(ctx, points, bar)
        if sphere_of is not None:
            n_core, idx, weights = sphere_of
            core_values = np.bincount(idx, weights=rho[n_core:] * weights, minlength=n_core)
            rho = rho[:n_core].copy()
            hits = np.unique(idx)
            rho[hits] = core_values[hits]
        return rho

    # ---- near-nucleus points -----------------------------------------------------------------
    def _substitute_core_points(self, ctx, points, core=None):
        """Points within CORE_RADIUS of a nucleus are replaced by a sphere average around it.

        The descriptor's 1/r diverges at a nucleus (NaN exactly on it) and training skips these
        points. The sphere points lie at CORE_RADIUS from the nucleus towards and away from each
        neighbour within rcut, so the set turns with the structure: rotation invariant.
        """
        if core is not None:  # a grid: found from the nuclei (grid.grid_points_near_atoms)
            hit, centers = core
        else:
            # serial Python time while the cores wait for the first chunk: use them (0.17 -> 0.08 s, 10^6 points)
            dist, near = ctx.tree.query(points, k=1, distance_upper_bound=CORE_RADIUS, workers=self.concurrent_calls)
            hit = np.flatnonzero(dist < CORE_RADIUS)
            centers = ctx.ext_pos[near[hit]]
        if hit.size == 0:
            return points, None
        extra, owner, weights = [], [], []
        for p, center in zip(hit, centers):
            neigh = np.asarray(ctx.tree.query_ball_point(center, self.rcut))
            vec = ctx.ext_pos[neigh] - center
            d = np.linalg.norm(vec, axis=1)
            vec = vec[d > 1e-8] / d[d > 1e-8, None]
            if len(vec) == 0:
                vec = np.eye(3)
            dirs = np.concatenate([vec, -vec]) * CORE_RADIUS
            extra.append(center + dirs)
            owner.append(np.full(len(dirs), p))
            weights.append(np.full(len(dirs), 1.0 / len(dirs)))
        n = len(points)
        frac = np.concatenate(extra) @ ctx.inv
        extra = (frac - np.floor(frac)) @ ctx.cell
        return np.concatenate([points, extra]), (n, np.concatenate(owner), np.concatenate(weights))

    # ---- evaluation in spatially local chunks -------------------------------------------------
    def _evaluate(self, ctx, points, bar=None):
        """Density at points inside the cell, evaluated bin by bin."""
        # Python's cyclic collector ran every few hundred batches and walked TensorFlow's whole
        # object graph each time: 2-4 % of the prediction time (perf, Si64, 10^6 points). The
        # batches make no reference cycles.
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._evaluate_bins(ctx, points, bar)
        finally:
            if enabled:
                gc.enable()

    def _evaluate_bins(self, ctx, points, bar=None):
        frac = _to(points, ctx.inv)
        bin_ijk = np.minimum((frac * ctx.nbins).astype(int), ctx.nbins - 1)
        bin_id = np.ravel_multi_index(bin_ijk.T, ctx.nbins)
        order = np.argsort(bin_id, kind="stable")
        bounds = np.flatnonzero(np.diff(bin_id[order])) + 1
        groups = np.split(order, bounds)
        centers = ((np.array([bin_ijk[g[0]] for g in groups]) + 0.5) / ctx.nbins) @ ctx.cell
        cand_lists = ctx.tree.query_ball_point(centers, self.rcut + ctx.half_diag, workers=self.concurrent_calls)
        rho = np.empty(len(points))
        # two calls in flight hold two sets of TensorFlow's intermediates: halve the chunk so that
        # peak memory stays that of one call of chunk_points (plain graph: 2.6 GB instead of 1.9 GB
        # at 100^3 measured)
        chunk = max(1, self.chunk_points // self.concurrent_calls)
        batches, batch, batch_n = [], [], 0
        for g, cands in zip(groups, cand_lists):
            batch.append((g, np.asarray(cands, dtype=np.int64)))
            batch_n += len(g)
            if batch_n >= chunk:
                batches.append(batch)
                batch, batch_n = [], 0
        if batch:
            batches.append(batch)

        def run(b):
            return self._run_batch(b, points, ctx.ext_pos, ctx.ext_types, ctx.cell, rho)

        # Session.run releases the GIL; the batches write disjoint entries of rho
        pool = ThreadPoolExecutor(self.concurrent_calls) if self.concurrent_calls > 1 and len(batches) > 1 else None
        try:
            for n in pool.map(run, batches) if pool else map(run, batches):
                if bar:
                    bar.update(n)
        finally:
            if pool:
                pool.shutdown()
        return rho

    def _run_batch(self, batch, points, ext_pos, ext_types, cell, rho):
        idx = np.concatenate([g for g, _ in batch])
        nloc = len(idx)
        used = np.unique(np.concatenate([c for _, c in batch]))
        remap = np.full(len(ext_pos), -1, dtype=np.int64)
        remap[used] = nloc + np.arange(len(used))
        numneigh = np.concatenate([np.full(len(g), len(c)) for g, c in batch])
        jlist = np.concatenate([np.tile(remap[c], len(g)) for g, c in batch]) if len(used) else np.zeros(0, int)
        mesh = np.zeros(16 + 2 * nloc + len(jlist), dtype=np.int32)
        mesh[0] = nloc
        mesh[16 : 16 + nloc] = np.arange(nloc)
        mesh[16 + nloc : 16 + 2 * nloc] = numneigh
        mesh[16 + 2 * nloc :] = jlist
        coord = np.concatenate([points[idx], ext_pos[used]])
        atype = np.concatenate([np.full(nloc, self.ghost_type), ext_types[used]])
        natoms = np.zeros(len(self.type_map) + 2, dtype=np.int32)
        natoms[0], natoms[1], natoms[2 + self.ghost_type] = nloc, nloc + len(used), nloc
        rho[idx] = self.session.run(coord, atype, natoms, cell, mesh)
        return nloc


def _to(vectors, matrix):
    """vectors @ matrix for (N, 3) x (3, 3) without BLAS: numpy's threaded BLAS leaves its
    threads spinning after the call, and they took 1.6 % of the CPU from prediction (perf, 10^6
    points, 2 cores)."""
    return np.einsum("ij,jk->ik", vectors, matrix)


def assemble_slabs(slabs, shape) -> np.ndarray:
    """The whole grid from (k0, k1, rho[:, :, k0:k1]) slabs (DeepCharge.iter_slabs and the like)."""
    rho = np.empty(tuple(shape))
    for k0, k1, slab in slabs:
        rho[:, :, k0:k1] = slab
    return rho


def write_prediction(
    output,
    atoms: Atoms,
    shape,
    streams,
    fmt: str = "chgcar",
    trailers=None,
    normalize: float | None = None,
    model_name: str = "",
) -> list:
    """Write predicted slabs to a CHGCAR (or a cube file); returns each block's integral before
    any scaling (electrons, then the moment in muB for a magnetisation block).

    `streams` holds one iterable of (k0, k1, rho[:, :, k0:k1]) per block (DeepCharge.iter_slabs;
    a second one is a magnetisation), `trailers` the text after each CHGCAR block. A CHGCAR is
    streamed slab by slab; with `normalize` (electrons) the total is scaled to that count, which
    needs the whole grid first, as does a cube file (one block).
    """
    from deepmd_charge.io.chgcar import write_chgcar, write_chgcar_slabs
    from deepmd_charge.io.cube import write_cube

    trailers = list(trailers) if trailers is not None else [""] * len(streams)
    title = f"{atoms.get_chemical_formula()} deepmd-charge prediction"
    if fmt == "chgcar" and normalize is None:
        sums = write_chgcar_slabs(output, atoms, shape, list(zip(streams, trailers)), title=title)
        return [electrons_from_sum(s, int(np.prod(shape)), atoms.cell[:]) for s in sums]
    grids = [assemble_slabs(stream, shape) for stream in streams]
    integrals = [electrons(g, atoms.cell[:]) for g in grids]
    if normalize is not None:
        grids[0] *= normalize / integrals[0]
    if fmt == "cube":
        write_cube(output, atoms, grids[0], comment=f"deepmd-charge prediction, model {model_name}")
    else:
        write_chgcar(output, atoms, grids, trailers=trailers, title=title)
    return integrals


def slab_bounds(shape, slab_points: int = SLAB_POINTS) -> list:
    """(k0, k1) runs of z-planes holding about `slab_points` grid points each."""
    planes = max(1, slab_points // (shape[0] * shape[1]))
    return [(k, min(k + planes, shape[2])) for k in range(0, shape[2], planes)]


class _Structure:
    """Per-structure data shared by all chunks: cell, bins and the periodic images of the atoms."""

    def __init__(self, atoms: Atoms, types: np.ndarray, rcut: float, bin_length: float):
        self.cell = np.asarray(atoms.cell[:], dtype=np.float64)
        self.inv = np.linalg.inv(self.cell)
        thickness = 1.0 / np.linalg.norm(self.inv.T, axis=1)  # distance between opposite faces
        self.nbins = np.maximum(1, np.floor(thickness / bin_length)).astype(int)
        corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]) - 0.5
        self.half_diag = float(np.max(np.linalg.norm((corners / self.nbins) @ self.cell, axis=1)))
        self.ext_pos, ext_idx = periodic_images(atoms, rcut + self.half_diag)
        self.ext_types = types[ext_idx]
        self.tree = cKDTree(self.ext_pos)
